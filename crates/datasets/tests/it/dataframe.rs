//! Every validation rule of OML's dataframe format, each with a failing and a passing CSV, plus
//! remapping, writing and a no-panic property on arbitrary input.

use oml_datasets::dataframe::{
    DataframeError, DataframeWarning, Problem, ReadOptions, Split, parse_dataframe,
};
use proptest::prelude::*;

const HEADER: &str = "label,path,split,is_query,is_gallery";

fn parse(csv: &str) -> Result<oml_datasets::dataframe::Dataframe, DataframeError> {
    parse_dataframe(csv.as_bytes(), "test.csv", &ReadOptions::default())
}

fn parse_with(
    csv: &str,
    o: &ReadOptions,
) -> Result<oml_datasets::dataframe::Dataframe, DataframeError> {
    parse_dataframe(csv.as_bytes(), "test.csv", o)
}

fn problems(csv: &str) -> Vec<Problem> {
    match parse(csv) {
        Ok(df) => panic!("expected problems, parsed {} rows", df.len()),
        Err(e) => e.problems().to_vec(),
    }
}

/// `(row, column)` pairs of the problems, for compact assertions.
fn places(csv: &str) -> Vec<(usize, String)> {
    problems(csv)
        .into_iter()
        .map(|p| (p.row, p.column))
        .collect()
}

fn body(rows: &[&str]) -> String {
    let mut s = String::from(HEADER);
    for r in rows {
        s.push('\n');
        s.push_str(r);
    }
    s.push('\n');
    s
}

const GOOD: [&str; 4] = [
    "0,a.png,train,,",
    "0,b.png,train,,",
    "7,c.png,validation,True,True",
    "7,d.png,validation,False,True",
];

#[test]
fn a_well_formed_file_is_typed() {
    let df = parse(&body(&GOOD)).unwrap();
    assert_eq!(df.len(), 4);
    let r = &df.rows[2];
    assert_eq!(
        (r.row, r.label, r.split, r.is_query, r.is_gallery),
        (4, 7, Split::Validation, true, true)
    );
    assert_eq!(r.path.to_str(), Some("c.png"));
    assert_eq!(
        (df.rows[0].split, df.rows[0].is_query, df.rows[0].is_gallery),
        (Split::Train, false, false)
    );
    assert!(df.warnings.is_empty());
    assert!(!df.columns.category && !df.columns.bbox && !df.columns.sequence);
}

#[test]
fn required_columns() {
    for missing in ["label", "path", "split", "is_query", "is_gallery"] {
        let cols: Vec<&str> = HEADER.split(',').filter(|c| *c != missing).collect();
        let csv = format!("{}\n{}\n", cols.join(","), vec!["x"; cols.len()].join(","));
        let p = problems(&csv);
        assert!(
            p.iter().any(|p| p.row == 1 && p.column == missing),
            "{missing}: {p:?}"
        );
    }
    // Columns in another order, plus an unknown column: fine.
    let df = parse("is_gallery,extra,path,label,is_query,split\nTrue,zz,a.png,3,True,validation\n")
        .unwrap();
    assert_eq!(df.rows[0].label, 3);
    // `text` instead of `path` is named in the message.
    let p = problems("label,text,split,is_query,is_gallery\n1,hi,validation,True,True\n");
    assert!(p[0].message.contains("text"), "{p:?}");
}

#[test]
fn split_values() {
    assert_eq!(
        places(&body(&["0,a.png,test,,", "1,b.png,Train,,"])),
        vec![(2, "split".into()), (3, "split".into())]
    );
    assert!(parse(&body(&GOOD)).is_ok());
}

#[test]
fn missing_split_column_only_when_allowed() {
    let csv = "label,path,is_query,is_gallery\n1,a.png,True,True\n1,b.png,False,True\n";
    assert!(places(csv).contains(&(1, "split".into())));
    let o = ReadOptions {
        require_split: false,
        ..Default::default()
    };
    let df = parse_with(csv, &o).unwrap();
    assert!(df.rows.iter().all(|r| r.split == Split::Validation));
    assert!(!df.columns.split);
    // Present but wrong values are still errors without the requirement.
    let e = parse_with(&body(&["1,a.png,tst,True,True"]), &o).unwrap_err();
    assert_eq!(e.problems()[0].column, "split");
}

#[test]
fn train_rows_have_empty_flags() {
    let p = problems(&body(&[
        "0,a.png,train,True,",
        "0,b.png,train,,False",
        "1,c.png,validation,True,True",
    ]));
    let got: Vec<_> = p
        .iter()
        .map(|p| (p.row, p.column.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![(2, "is_query", "True"), (3, "is_gallery", "False")]
    );
    // pandas' NA spellings count as empty.
    assert!(
        parse(&body(&[
            "0,a.png,train,NaN,nan",
            "1,c.png,validation,True,True"
        ]))
        .is_ok()
    );
}

#[test]
fn validation_flags_are_booleans() {
    let p = problems(&body(&[
        "1,a.png,validation,yes,True",
        "1,b.png,validation,True,",
        "1,c.png,validation,True,True",
    ]));
    let got: Vec<_> = p
        .iter()
        .map(|p| (p.row, p.column.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(got, vec![(2, "is_query", "yes"), (3, "is_gallery", "")]);
    // Any case, and 1/0 and 1.0/0.0 as pandas reads them.
    let df = parse(&body(&[
        "1,a.png,validation,true,TRUE",
        "1,b.png,validation,FALSE,1",
        "1,c.png,validation,1.0,0.0",
        "1,d.png,validation,0,true",
    ]))
    .unwrap();
    let flags: Vec<_> = df.rows.iter().map(|r| (r.is_query, r.is_gallery)).collect();
    assert_eq!(
        flags,
        vec![(true, true), (false, true), (true, false), (false, true)]
    );
}

#[test]
fn validation_rows_are_query_or_gallery() {
    let p = problems(&body(&[
        "1,a.png,validation,False,False",
        "1,b.png,validation,True,True",
    ]));
    assert_eq!(p.len(), 1);
    assert_eq!(
        (p[0].row, p[0].column.as_str(), p[0].value.as_str()),
        (2, "is_query, is_gallery", "False, False")
    );
    assert!(
        parse(&body(&[
            "1,a.png,validation,False,True",
            "1,b.png,validation,True,False"
        ]))
        .is_ok()
    );
}

#[test]
fn labels_are_integers() {
    let p = problems(&body(&[
        "1.5,a.png,train,,",
        "a,b.png,train,,",
        ",c.png,train,,",
        "-3,d.png,train,,",
    ]));
    let got: Vec<_> = p.iter().map(|p| (p.row, p.value.as_str())).collect();
    assert_eq!(got, vec![(2, "1.5"), (3, "a"), (4, "")]);
    assert!(p.iter().all(|p| p.column == "label"));
    assert_eq!(
        parse(&body(&["-3,d.png,train,,"])).unwrap().rows[0].label,
        -3
    );
}

#[test]
fn query_labels_must_be_in_gallery() {
    let csv = body(&[
        "1,a.png,validation,True,False",
        "2,b.png,validation,True,True",
        "1,c.png,train,,",
    ]);
    let p = problems(&csv);
    assert_eq!(
        (p[0].row, p[0].column.as_str(), p[0].value.as_str()),
        (2, "label", "1")
    );
    assert_eq!(p.len(), 1, "a train row is not a gallery item: {p:?}");
    // Allowed (and counted) when the requirement is off, as `oml eval` does.
    let o = ReadOptions {
        require_query_labels_in_gallery: false,
        ..Default::default()
    };
    let df = parse_with(&csv, &o).unwrap();
    assert_eq!(df.n_queries_without_gallery_label(), 1);
    assert_eq!(
        df.warnings,
        vec![DataframeWarning::QueryLabelNotInGallery { row: 2, label: 1 }]
    );
    // Passing: the label has a gallery item.
    assert!(
        parse(&body(&[
            "1,a.png,validation,True,False",
            "1,b.png,validation,False,True"
        ]))
        .is_ok()
    );
}

#[test]
fn files_exist_under_the_root_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("imgs")).unwrap();
    std::fs::write(dir.path().join("imgs/a.png"), b"x").unwrap();
    let csv = body(&[
        "1,imgs/a.png,validation,True,True",
        "1,imgs/missing.png,validation,False,True",
    ]);
    assert!(parse(&csv).is_ok(), "no root: no file check");
    let e = parse_with(&csv, &ReadOptions::with_root(dir.path())).unwrap_err();
    assert_eq!(e.problems().len(), 1);
    assert_eq!(
        (e.problems()[0].row, e.problems()[0].value.as_str()),
        (3, "imgs/missing.png")
    );
    std::fs::write(dir.path().join("imgs/missing.png"), b"x").unwrap();
    assert!(parse_with(&csv, &ReadOptions::with_root(dir.path())).is_ok());
}

const BB: &str = "label,path,split,is_query,is_gallery,x_1,x_2,y_1,y_2";

#[test]
fn bbox_columns_all_or_none() {
    let p = problems("label,path,split,is_query,is_gallery,x_1,y_1\n1,a.png,train,,,1,2\n");
    let cols: Vec<_> = p.iter().map(|p| (p.row, p.column.as_str())).collect();
    assert_eq!(cols, vec![(1, "x_2"), (1, "y_2")]);
}

#[test]
fn bbox_values() {
    let csv = format!(
        "{BB}\n0,a.png,train,,,1,,2,5\n0,b.png,train,,,1.5,4,2,5\n0,c.png,train,,,-1,4,2,5\n\
         0,d.png,train,,,4,4,2,5\n0,e.png,train,,,1,4,6,5\n0,f.png,train,,,a,4,2,5\n"
    );
    let got: Vec<_> = problems(&csv)
        .into_iter()
        .map(|p| (p.row, p.column, p.value))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, "x_2".into(), "".into()),
            (3, "x_1".into(), "1.5".into()),
            (4, "x_1".into(), "-1".into()),
            (5, "x_1, x_2".into(), "4, 4".into()),
            (6, "y_1, y_2".into(), "6, 5".into()),
            (7, "x_1".into(), "a".into()),
        ]
    );
    // Passing: integers, integral floats as pandas writes them, and rows without a box.
    let df = parse(&format!(
        "{BB}\n0,a.png,train,,,1,4,2,5\n0,b.png,train,,,1.0,4.0,2.0,5.0\n0,c.png,train,,,,,,\n"
    ))
    .unwrap();
    assert!(df.columns.bbox);
    assert_eq!(df.rows[0].bbox, Some([1, 2, 4, 5]));
    assert_eq!(df.rows[1].bbox, Some([1, 2, 4, 5]));
    assert_eq!(df.rows[2].bbox, None);
}

#[test]
fn categories_and_sequences() {
    let csv = "label,path,split,is_query,is_gallery,category,sequence\n\
               1,a.png,validation,True,True,,s1\n1,b.png,validation,True,True,shoes,\n";
    let got: Vec<_> = problems(csv)
        .into_iter()
        .map(|p| (p.row, p.column))
        .collect();
    assert_eq!(got, vec![(2, "category".into()), (3, "sequence".into())]);
    // Strings or integers; a label with two categories is a warning, the last row wins.
    let df = parse(
        "label,path,split,is_query,is_gallery,category,sequence\n\
         1,a.png,validation,True,True,shoes,1\n1,b.png,validation,True,True,3,s2\n2,c.png,train,,,bags,7\n",
    )
    .unwrap();
    assert_eq!(df.rows[0].category.as_deref(), Some("shoes"));
    assert_eq!(df.rows[1].sequence.as_deref(), Some("s2"));
    assert_eq!(
        df.warnings,
        vec![DataframeWarning::LabelWithManyCategories {
            label: 1,
            categories: vec!["3".into(), "shoes".into()]
        }]
    );
    let l2c = df.label_to_category().unwrap();
    assert_eq!((l2c[&1].as_str(), l2c[&2].as_str()), ("3", "bags"));
    assert!(parse(&body(&GOOD)).unwrap().label_to_category().is_none());
}

#[test]
fn malformed_rows_and_headers() {
    // Wrong number of fields.
    assert_eq!(
        places(&body(&["0,a.png,train,", "0,b.png,train,,"])),
        vec![(2, String::new())]
    );
    // Duplicate column.
    assert_eq!(
        places("label,path,split,is_query,is_gallery,label\n1,a,train,,,1\n")[0],
        (1, "label".into())
    );
    // Empty file, header only.
    assert_eq!(places(""), vec![(1, String::new())]);
    assert_eq!(places(&format!("{HEADER}\n")), vec![(1, String::new())]);
    // Invalid UTF-8 in a path.
    let mut bytes = format!("{HEADER}\n1,").into_bytes();
    bytes.extend([0xff, 0xfe]);
    bytes.extend(b",validation,True,True\n");
    let e = parse_dataframe(&bytes[..], "x.csv", &ReadOptions::default()).unwrap_err();
    assert_eq!(
        (e.problems()[0].row, e.problems()[0].column.as_str()),
        (2, "path")
    );
    // A BOM and a semicolon delimiter.
    let o = ReadOptions {
        delimiter: b';',
        ..Default::default()
    };
    let df = parse_with(
        "\u{feff}label;path;split;is_query;is_gallery\n1;a.png;validation;True;True\n",
        &o,
    )
    .unwrap();
    assert_eq!(df.rows[0].label, 1);
}

#[test]
fn all_problems_reported_at_once_with_spreadsheet_rows() {
    let e = parse(&body(&[
        "0,a.png,train,,",
        "x,b.png,train,,",
        "0,c.png,valid,,",
        "1,d.png,validation,True,maybe",
        "1,e.png,validation,False,True",
    ]))
    .unwrap_err();
    let rows: Vec<_> = e.problems().iter().map(|p| p.row).collect();
    assert_eq!(rows, vec![3, 4, 5]);
    let msg = e.to_string();
    assert!(
        msg.contains("test.csv")
            && msg.contains("3 problem")
            && msg.contains("row 5, column `is_gallery`, value \"maybe\""),
        "{msg}"
    );
    // Through the shared error type.
    let d: oml_interfaces::DatasetError = e.into();
    assert!(d.to_string().contains("row 4"));
}

#[test]
fn rows_after_blank_lines_are_named_by_their_line() {
    // the reader skips blank lines; a spreadsheet (and the user's editor) still counts them
    let csv = format!("{HEADER}\n0,a.png,train,,\n\n\n0,b.png,train,,\nx,c.png,train,,\n");
    assert_eq!(places(&csv), vec![(6, "label".to_string())]);
    // a quoted field spanning two lines: the next record starts one line later
    let csv = format!("{HEADER}\n0,\"a\nb.png\",train,,\n0,c.png,trian,,\n");
    assert_eq!(places(&csv), vec![(4, "split".to_string())]);
    let df = parse(&format!("{HEADER}\n\n0,a.png,train,,\n")).unwrap();
    assert_eq!(df.rows[0].row, 3);
}

#[test]
fn read_dataframe_names_the_file() {
    let e = oml_datasets::dataframe::read_dataframe("/no/such/df.csv", &ReadOptions::default())
        .unwrap_err();
    assert!(matches!(e, DataframeError::Io { .. }));
    assert!(e.to_string().contains("/no/such/df.csv"));
}

#[test]
fn label_remapping_is_dense_train_first() {
    let df = parse(&body(&[
        "50,v1.png,validation,True,True",
        "30,t1.png,train,,",
        "10,t2.png,train,,",
        "30,t3.png,train,,",
        "50,v2.png,validation,True,True",
        "10,v3.png,validation,True,True",
        "99,v4.png,validation,False,True",
    ]))
    .unwrap();
    let (re, map) = df.remap_labels();
    assert_eq!(re.labels(), vec![2, 0, 1, 0, 2, 1, 3]);
    assert_eq!(map.inverse, vec![30, 10, 50, 99]);
    assert_eq!(map.len(), 4);
    // Train labels are exactly 0..N_train.
    let train: std::collections::BTreeSet<i64> =
        re.split(Split::Train).labels().into_iter().collect();
    assert_eq!(train.into_iter().collect::<Vec<_>>(), vec![0, 1]);
    // The map is a bijection and consistent with the rows.
    for (r, o) in re.rows.iter().zip(&df.rows) {
        assert_eq!(map.inverse[r.label as usize], o.label);
    }
}

fn arb_row() -> impl Strategy<Value = oml_datasets::dataframe::Row> {
    (
        -1000i64..1000,
        "[a-z]{1,6}(/[a-z]{1,6})?\\.png",
        any::<bool>(),
        any::<(bool, bool)>(),
        "[a-z0-9]{1,4}",
        "[a-z0-9]{1,4}",
        proptest::option::of((0u32..50, 0u32..50, 1u32..50, 1u32..50)),
    )
        .prop_map(|(label, path, train, (q, g), cat, seq, bb)| {
            let split = if train {
                Split::Train
            } else {
                Split::Validation
            };
            let (is_query, is_gallery) = if train { (false, false) } else { (q, g || !q) };
            oml_datasets::dataframe::Row {
                row: 0,
                label,
                path: path.into(),
                split,
                is_query,
                is_gallery,
                category: Some(cat),
                sequence: Some(seq),
                bbox: bb.map(|(x, y, w, h)| [x, y, x + w, y + h]),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes never panic; any problem points at a row that exists; what is accepted
    /// survives a write/read round trip (the property of the fuzz target).
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), flags in 0u8..4) {
        let o = ReadOptions { require_split: flags & 1 == 0, require_query_labels_in_gallery: flags & 2 == 0, ..Default::default() };
        match parse_dataframe(&bytes[..], "fuzz.csv", &o) {
            Err(DataframeError::Invalid { problems, .. }) => {
                prop_assert!(!problems.is_empty());
                prop_assert!(problems.iter().all(|p| p.row >= 1));
            }
            Err(DataframeError::Io { .. }) => {}
            Ok(df) => {
                let again = parse_dataframe(df.to_csv_string().as_bytes(), "again.csv", &o);
                prop_assert!(again.is_ok(), "{:?}", again.err());
            }
        }
    }

    /// Near-valid files (a valid header, rows of plausible values) hit the accepting paths too.
    #[test]
    fn near_valid_files_never_panic_and_round_trip(
        rows in proptest::collection::vec(
            (prop_oneof!["0", "1", "-2", "x"], prop_oneof!["a.png", "", "b c.png"], prop_oneof!["train", "validation"],
             prop_oneof!["", "True", "False", "1"], prop_oneof!["", "True", "false"]),
            1..8),
    ) {
        let mut s = HEADER.to_string();
        for (l, p, sp, q, g) in &rows {
            s.push_str(&format!("\n{l},{p},{sp},{q},{g}"));
        }
        if let Ok(df) = parse(&s) {
            prop_assert_eq!(df.len(), rows.len());
            let again = parse(&df.to_csv_string()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again.labels(), df.labels());
        }
    }

    /// CSV-shaped noise (the header right, fields drawn from the tricky values) never panics.
    #[test]
    fn csv_shaped_noise_never_panics(
        cells in proptest::collection::vec(
            proptest::collection::vec(
                prop_oneof!["", "True", "false", "train", "validation", "1", "-1", "1.5", "nan", "a,b", "\"q\"", "x\ny"],
                0..12),
            0..12),
        extra_cols in proptest::sample::subsequence(vec!["category", "sequence", "x_1", "x_2", "y_1", "y_2"], 0..6),
    ) {
        let mut s = HEADER.to_string();
        for c in &extra_cols { s.push(','); s.push_str(c); }
        for row in &cells {
            s.push('\n');
            s.push_str(&row.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(","));
        }
        let _ = parse(&s);
    }

    /// Writing then reading gives the rows back (with spreadsheet row numbers).
    #[test]
    fn write_read_round_trip(mut rows in proptest::collection::vec(arb_row(), 1..30)) {
        // Make every query's label present in the gallery.
        let gallery_label = rows.iter().find(|r| r.is_gallery).map(|r| r.label);
        for r in rows.iter_mut().filter(|r| r.is_query) {
            match gallery_label { Some(l) => r.label = l, None => { r.is_gallery = true; } }
        }
        let gallery_label = rows.iter().find(|r| r.is_gallery).map(|r| r.label);
        for r in rows.iter_mut().filter(|r| r.is_query) { r.label = gallery_label.unwrap_or(r.label); }
        let df = oml_datasets::dataframe::Dataframe {
            rows: rows.clone(),
            columns: oml_datasets::dataframe::OptionalColumns { category: true, sequence: true, bbox: true, split: true },
            warnings: vec![],
        };
        let back = parse(&df.to_csv_string()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (i, (a, b)) in rows.iter().zip(&back.rows).enumerate() {
            let mut a = a.clone();
            a.row = i + 2;
            prop_assert_eq!(&a, b);
        }
        prop_assert_eq!(rows.len(), back.len());
    }
}
