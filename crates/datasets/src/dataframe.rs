//! OML's dataframe format: one CSV per dataset, read, validated and typed.
//!
//! Columns: `label, path, split, is_query, is_gallery[, category][, sequence][, x_1, x_2, y_1,
//! y_2]`, in any order; other columns are ignored. Booleans are written as pandas writes them
//! (`True`/`False`, any case; `1`/`0` and `1.0`/`0.0` are accepted, as pandas reads them as
//! booleans too) and are empty on train rows.
//!
//! [`read_dataframe`] checks everything OML's `check_retrieval_dataframe_format` checks
//! (reference §1.5) and reports **every** problem at once, each with its spreadsheet row number
//! (the header is row 1, the first data row is row 2), column and value. Deliberate differences:
//! - rows with an empty bounding box are allowed next to rows with a box (OML documents this but
//!   crashes on them, reference §5.4);
//! - an empty `category` or `sequence` value is an error (pandas would turn it into a NaN that
//!   groups or masks unrelated rows);
//! - labels are remapped with a stable order (train rows first, in file order), where OML's
//!   unstable `sort_values` leaves the order of train labels unspecified.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Column names, as OML's `oml/const.py` spells them.
pub mod columns {
    /// Integer label.
    pub const LABEL: &str = "label";
    /// Image path, relative to the dataset root (or absolute).
    pub const PATH: &str = "path";
    /// `train` or `validation`.
    pub const SPLIT: &str = "split";
    /// Whether a validation row is a query.
    pub const IS_QUERY: &str = "is_query";
    /// Whether a validation row is a gallery item.
    pub const IS_GALLERY: &str = "is_gallery";
    /// Optional category (string or integer).
    pub const CATEGORY: &str = "category";
    /// Optional sequence id: gallery items of a query's sequence are never retrieved for it.
    pub const SEQUENCE: &str = "sequence";
    /// Bounding box: left.
    pub const X1: &str = "x_1";
    /// Bounding box: right.
    pub const X2: &str = "x_2";
    /// Bounding box: top.
    pub const Y1: &str = "y_1";
    /// Bounding box: bottom.
    pub const Y2: &str = "y_2";
    /// The four bounding-box columns, in the order OML lists them.
    pub const BBOX: [&str; 4] = [X1, X2, Y1, Y2];
}

/// Which part of the data a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    /// `train`: used for training; query/gallery flags are empty.
    Train,
    /// `validation`: evaluated by retrieval; each row is a query and/or a gallery item.
    Validation,
}

impl Split {
    /// The value as written in the CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validated row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// 1-based spreadsheet row number in the source file (the header is row 1); 0 for rows
    /// built in code.
    pub row: usize,
    /// Integer label.
    pub label: i64,
    /// Image path as written (relative to the dataset root unless absolute).
    pub path: PathBuf,
    /// Train or validation.
    pub split: Split,
    /// Query flag (always false on train rows).
    pub is_query: bool,
    /// Gallery flag (always false on train rows).
    pub is_gallery: bool,
    /// Category, when the file has a `category` column.
    pub category: Option<String>,
    /// Sequence id, when the file has a `sequence` column.
    pub sequence: Option<String>,
    /// Bounding box `[x1, y1, x2, y2]` in pixels (`x1 < x2`, `y1 < y2`), when the row has one.
    pub bbox: Option<[u32; 4]>,
}

/// One problem found in a CSV: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based spreadsheet row (the header is row 1).
    pub row: usize,
    /// Column name (empty when the problem concerns a whole row).
    pub column: String,
    /// The offending value as written.
    pub value: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {}", self.row)?;
        if !self.column.is_empty() {
            write!(f, ", column `{}`", self.column)?;
        }
        write!(f, ", value {:?}: {}", self.value, self.message)
    }
}

/// Why a dataframe could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DataframeError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The content breaks the format; every problem found is listed.
    #[error("{file}: {} problem(s) in the dataframe:\n{}", problems.len(), format_problems(problems))]
    Invalid {
        /// The file (or the name given to [`parse_dataframe`]).
        file: String,
        /// All problems, in row order.
        problems: Vec<Problem>,
    },
}

fn format_problems(problems: &[Problem]) -> String {
    const SHOWN: usize = 200;
    let mut s: Vec<String> = problems
        .iter()
        .take(SHOWN)
        .map(|p| format!("  {p}"))
        .collect();
    if problems.len() > SHOWN {
        s.push(format!("  … and {} more", problems.len() - SHOWN));
    }
    s.join("\n")
}

impl DataframeError {
    /// The problems (empty for I/O errors).
    pub fn problems(&self) -> &[Problem] {
        match self {
            DataframeError::Invalid { problems, .. } => problems,
            DataframeError::Io { .. } => &[],
        }
    }
}

impl From<DataframeError> for oml_interfaces::DatasetError {
    fn from(e: DataframeError) -> Self {
        match e {
            DataframeError::Io { path, source } => oml_interfaces::DatasetError::Io {
                path: path.display().to_string(),
                message: source.to_string(),
            },
            DataframeError::Invalid { file, problems } if problems.len() == 1 => {
                // invariant: the match guard saw exactly one problem
                let p = problems.into_iter().next().expect("one problem");
                oml_interfaces::DatasetError::Invalid {
                    file,
                    row: p.row,
                    column: p.column,
                    value: p.value,
                    message: p.message,
                }
            }
            other => oml_interfaces::DatasetError::Other(other.to_string()),
        }
    }
}

/// Something worth telling the user that does not stop reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataframeWarning {
    /// A label occurs with several categories (OML warns too; the last row wins in
    /// [`Dataframe::label_to_category`]).
    LabelWithManyCategories {
        /// The label.
        label: i64,
        /// Its categories, sorted.
        categories: Vec<String>,
    },
    /// A query whose label no gallery item has (allowed only with
    /// [`ReadOptions::require_query_labels_in_gallery`] off; such a query has no ground truth).
    QueryLabelNotInGallery {
        /// Spreadsheet row.
        row: usize,
        /// The label.
        label: i64,
    },
}

impl fmt::Display for DataframeWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataframeWarning::LabelWithManyCategories { label, categories } => {
                write!(
                    f,
                    "label {label} has several categories: {}",
                    categories.join(", ")
                )
            }
            DataframeWarning::QueryLabelNotInGallery { row, label } => {
                write!(f, "row {row}: query label {label} has no gallery item")
            }
        }
    }
}

/// How to read and what to require.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// Check that every `dataset_root/path` exists (only when given).
    pub dataset_root: Option<PathBuf>,
    /// Require the `split` column. When false and the column is missing, every row is a
    /// validation row.
    pub require_split: bool,
    /// Require every query label to occur among the gallery labels (OML's rule). When false,
    /// such queries are kept and listed in [`Dataframe::warnings`].
    pub require_query_labels_in_gallery: bool,
    /// Field delimiter (OML's `sep`), `b','` by default.
    pub delimiter: u8,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            dataset_root: None,
            require_split: true,
            require_query_labels_in_gallery: true,
            delimiter: b',',
        }
    }
}

impl ReadOptions {
    /// Defaults plus a dataset root whose files must exist.
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        ReadOptions {
            dataset_root: Some(root.into()),
            ..Default::default()
        }
    }
}

/// Which optional columns the file had.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptionalColumns {
    /// `category` is present.
    pub category: bool,
    /// `sequence` is present.
    pub sequence: bool,
    /// All four bounding-box columns are present.
    pub bbox: bool,
    /// `split` is present.
    pub split: bool,
}

/// A validated dataframe: typed rows plus what was noticed on the way.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dataframe {
    /// The rows, in file order.
    pub rows: Vec<Row>,
    /// Which optional columns exist.
    pub columns: OptionalColumns,
    /// Non-fatal findings.
    pub warnings: Vec<DataframeWarning>,
}

/// Reads and validates a dataframe CSV.
///
/// ```
/// use oml_datasets::dataframe::{parse_dataframe, ReadOptions, Split};
/// let csv = "label,path,split,is_query,is_gallery\n\
///            0,a.png,train,,\n\
///            1,b.png,validation,True,True\n\
///            1,c.png,validation,False,True\n";
/// let df = parse_dataframe(csv.as_bytes(), "df.csv", &ReadOptions::default())?;
/// assert_eq!(df.rows[1].split, Split::Validation);
/// assert_eq!(df.rows[2].row, 4); // spreadsheet row
///
/// let bad = "label,path,split,is_query,is_gallery\n0,a.png,test,,\n";
/// let err = parse_dataframe(bad.as_bytes(), "bad.csv", &ReadOptions::default()).unwrap_err();
/// assert_eq!(err.problems()[0].row, 2);
/// assert_eq!(err.problems()[0].column, "split");
/// # Ok::<(), oml_datasets::dataframe::DataframeError>(())
/// ```
pub fn read_dataframe(
    path: impl AsRef<Path>,
    options: &ReadOptions,
) -> Result<Dataframe, DataframeError> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|source| DataframeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_dataframe(
        std::io::BufReader::new(file),
        &path.display().to_string(),
        options,
    )
}

/// Reads and validates a dataframe from any reader; `name` names it in messages.
pub fn parse_dataframe(
    reader: impl Read,
    name: &str,
    options: &ReadOptions,
) -> Result<Dataframe, DataframeError> {
    let mut p = Parser {
        problems: Vec::new(),
    };
    let df = p.parse(reader, options);
    if p.problems.is_empty() {
        Ok(df)
    } else {
        p.problems.sort_by_key(|q| q.row);
        Err(DataframeError::Invalid {
            file: name.to_string(),
            problems: p.problems,
        })
    }
}

/// pandas' default NA strings: such a value reads as NaN.
const NA_VALUES: [&str; 19] = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
];

fn is_na(v: &str) -> bool {
    NA_VALUES.contains(&v)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "1.0" => Some(true),
        "false" | "0" | "0.0" => Some(false),
        _ => None,
    }
}

/// An integer-valued number: `12`, `12.0` (pandas writes a float column when some rows are NaN).
fn parse_integral(v: &str) -> Option<i64> {
    if let Ok(i) = v.parse::<i64>() {
        return Some(i);
    }
    let f = v.parse::<f64>().ok()?;
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

struct Parser {
    problems: Vec<Problem>,
}

/// Column positions in the header.
#[derive(Default)]
struct Layout {
    label: Option<usize>,
    path: Option<usize>,
    split: Option<usize>,
    is_query: Option<usize>,
    is_gallery: Option<usize>,
    category: Option<usize>,
    sequence: Option<usize>,
    bbox: Option<[usize; 4]>,
    n_fields: usize,
}

/// 1-based line numbers of byte offsets, for offsets visited in increasing order. The CSV
/// reader skips blank lines and reports a record's start before them; the line is that of its
/// first character, as an editor or a spreadsheet numbers it.
struct LineNumbers<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> LineNumbers<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            line: 1,
        }
    }

    /// The line of the first character at or after `offset` that is not a line break.
    fn line_at(&mut self, offset: usize) -> usize {
        let mut p = offset.min(self.bytes.len()).max(self.pos);
        self.line += self.bytes[self.pos..p]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        while let Some(&b) = self.bytes.get(p).filter(|&&b| b == b'\n' || b == b'\r') {
            self.line += usize::from(b == b'\n');
            p += 1;
        }
        self.pos = p;
        self.line
    }
}

impl Parser {
    fn problem(&mut self, row: usize, column: &str, value: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            row,
            column: column.to_string(),
            value: value.to_string(),
            message: message.into(),
        });
    }

    fn parse(&mut self, mut reader: impl Read, opts: &ReadOptions) -> Dataframe {
        // the whole file, to number rows by their line (see `LineNumbers`)
        let mut bytes = Vec::new();
        if let Err(e) = reader.read_to_end(&mut bytes) {
            self.problem(1, "", "", format!("unreadable file: {e}"));
            return Dataframe::default();
        }
        let mut lines = LineNumbers::new(&bytes);
        let reader = &bytes[..];
        let mut rdr = csv::ReaderBuilder::new()
            .delimiter(opts.delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(reader);
        let mut records = rdr.byte_records();
        let header = match records.next() {
            None => {
                self.problem(1, "", "", "the file is empty: a header row is required");
                return Dataframe::default();
            }
            Some(Err(e)) => {
                self.problem(1, "", "", format!("unreadable header: {e}"));
                return Dataframe::default();
            }
            Some(Ok(h)) => h,
        };
        let Some(layout) = self.layout(&header, opts) else {
            return Dataframe::default();
        };
        let columns = OptionalColumns {
            category: layout.category.is_some(),
            sequence: layout.sequence.is_some(),
            bbox: layout.bbox.is_some(),
            split: layout.split.is_some(),
        };

        let mut rows = Vec::new();
        for (i, rec) in records.enumerate() {
            // the record's line in the file: blank lines, which the reader skips, still count
            let start = match &rec {
                Ok(r) => r.position().map(|p| p.byte()),
                Err(e) => e.position().map(|p| p.byte()),
            };
            let row = start.map_or(i + 2, |b| lines.line_at(b as usize));
            match rec {
                Err(e) => self.problem(row, "", "", format!("unreadable CSV record: {e}")),
                Ok(rec) => {
                    if let Some(r) = self.row(row, &rec, &layout) {
                        rows.push(r);
                    }
                }
            }
        }
        if rows.is_empty() && self.problems.is_empty() {
            self.problem(1, "", "", "the file has a header but no data rows");
        }
        let mut warnings = Vec::new();
        self.check_query_labels(&rows, opts, &mut warnings);
        if let Some(root) = &opts.dataset_root {
            self.check_files(&rows, root);
        }
        if columns.category {
            category_warnings(&rows, &mut warnings);
        }
        Dataframe {
            rows,
            columns,
            warnings,
        }
    }

    fn layout(&mut self, header: &csv::ByteRecord, opts: &ReadOptions) -> Option<Layout> {
        let mut names = Vec::with_capacity(header.len());
        for (j, field) in header.iter().enumerate() {
            let mut name = String::from_utf8_lossy(field).into_owned();
            if j == 0 {
                name = name.trim_start_matches('\u{feff}').to_string();
            }
            names.push(name.trim().to_string());
        }
        let mut seen = HashSet::new();
        for n in &names {
            if !n.is_empty() && !seen.insert(n.as_str()) {
                self.problem(1, n, n, "the column appears more than once");
            }
        }
        let find = |n: &str| names.iter().position(|c| c == n);
        let mut l = Layout {
            label: find(columns::LABEL),
            path: find(columns::PATH),
            split: find(columns::SPLIT),
            is_query: find(columns::IS_QUERY),
            is_gallery: find(columns::IS_GALLERY),
            category: find(columns::CATEGORY),
            sequence: find(columns::SEQUENCE),
            bbox: None,
            n_fields: names.len(),
        };
        let mut required = vec![
            columns::LABEL,
            columns::PATH,
            columns::IS_QUERY,
            columns::IS_GALLERY,
        ];
        if opts.require_split {
            required.insert(2, columns::SPLIT);
        }
        let mut ok = true;
        for c in required {
            if find(c).is_none() {
                let hint = if c == columns::PATH && find("text").is_some() {
                    " (text datasets are not supported: only image paths)"
                } else {
                    ""
                };
                self.problem(
                    1,
                    c,
                    "",
                    format!("required column is missing{hint}; header is {names:?}"),
                );
                ok = false;
            }
        }
        let bbox: Vec<Option<usize>> = columns::BBOX.iter().map(|c| find(c)).collect();
        if bbox.iter().any(Option::is_some) {
            if let [Some(x1), Some(x2), Some(y1), Some(y2)] = bbox[..] {
                l.bbox = Some([x1, y1, x2, y2]);
            } else {
                for (c, pos) in columns::BBOX.iter().zip(&bbox) {
                    if pos.is_none() {
                        self.problem(
                            1,
                            c,
                            "",
                            "bounding boxes need all of x_1, x_2, y_1, y_2 or none",
                        );
                    }
                }
                ok = false;
            }
        }
        (ok && !self.problems.iter().any(|p| p.row == 1)).then_some(l)
    }

    fn row(&mut self, row: usize, rec: &csv::ByteRecord, l: &Layout) -> Option<Row> {
        if rec.len() != l.n_fields {
            // A lone empty field is a blank line.
            if rec.len() == 1
                && rec
                    .get(0)
                    .is_some_and(|f| f.iter().all(u8::is_ascii_whitespace))
            {
                self.problem(row, "", "", "blank row");
            } else {
                self.problem(
                    row,
                    "",
                    "",
                    format!(
                        "the row has {} fields but the header has {}",
                        rec.len(),
                        l.n_fields
                    ),
                );
            }
            return None;
        }
        let before = self.problems.len();
        let get = |this: &mut Self, idx: usize, col: &str| -> String {
            let raw = rec.get(idx).unwrap_or_default();
            match std::str::from_utf8(raw) {
                Ok(s) => s.trim().to_string(),
                Err(_) => {
                    let lossy = String::from_utf8_lossy(raw).into_owned();
                    this.problem(row, col, &lossy, "not valid UTF-8");
                    lossy
                }
            }
        };

        let label_s = get(self, l.label?, columns::LABEL);
        let label = match label_s.parse::<i64>() {
            Ok(v) => Some(v),
            Err(_) => {
                let why = if is_na(&label_s) {
                    "the label is missing"
                } else {
                    "labels must be integers"
                };
                self.problem(row, columns::LABEL, &label_s, why);
                None
            }
        };

        let path = get(self, l.path?, columns::PATH);
        if is_na(&path) {
            self.problem(row, columns::PATH, &path, "the path is missing");
        }

        let split = match l.split {
            None => Some(Split::Validation),
            Some(j) => {
                let s = get(self, j, columns::SPLIT);
                match s.as_str() {
                    "train" => Some(Split::Train),
                    "validation" => Some(Split::Validation),
                    _ => {
                        self.problem(
                            row,
                            columns::SPLIT,
                            &s,
                            "split must be `train` or `validation`",
                        );
                        None
                    }
                }
            }
        };

        let q = get(self, l.is_query?, columns::IS_QUERY);
        let g = get(self, l.is_gallery?, columns::IS_GALLERY);
        let mut is_query = false;
        let mut is_gallery = false;
        match split {
            Some(Split::Train) => {
                for (c, v) in [(columns::IS_QUERY, &q), (columns::IS_GALLERY, &g)] {
                    if !is_na(v) {
                        self.problem(row, c, v, "must be empty on train rows");
                    }
                }
            }
            Some(Split::Validation) => {
                let mut flags = [None, None];
                for (k, (c, v)) in [(columns::IS_QUERY, &q), (columns::IS_GALLERY, &g)]
                    .into_iter()
                    .enumerate()
                {
                    flags[k] = parse_bool(v);
                    if flags[k].is_none() {
                        let why = if is_na(v) {
                            "validation rows need True or False"
                        } else {
                            "must be True or False"
                        };
                        self.problem(row, c, v, why);
                    }
                }
                if let [Some(fq), Some(fg)] = flags {
                    if !fq && !fg {
                        self.problem(
                            row,
                            "is_query, is_gallery",
                            &format!("{q}, {g}"),
                            "a validation row must be a query, a gallery item or both",
                        );
                    }
                    is_query = fq;
                    is_gallery = fg;
                }
            }
            None => {}
        }

        let text_col = |this: &mut Self, pos: Option<usize>, col: &str| -> Option<String> {
            let v = get(this, pos?, col);
            if is_na(&v) {
                this.problem(row, col, &v, format!("the {col} is missing"));
            }
            Some(v)
        };
        let category = text_col(self, l.category, columns::CATEGORY);
        let sequence = text_col(self, l.sequence, columns::SEQUENCE);

        let bbox = match l.bbox {
            None => None,
            Some(pos) => self.bbox(row, rec, pos),
        };

        if self.problems.len() > before {
            return None;
        }
        Some(Row {
            row,
            label: label?,
            path: PathBuf::from(path),
            split: split?,
            is_query,
            is_gallery,
            category,
            sequence,
            bbox,
        })
    }

    /// `pos` is in `[x1, y1, x2, y2]` order.
    fn bbox(&mut self, row: usize, rec: &csv::ByteRecord, pos: [usize; 4]) -> Option<[u32; 4]> {
        let names = [columns::X1, columns::Y1, columns::X2, columns::Y2];
        let vals: Vec<String> = pos
            .iter()
            .map(|&j| {
                String::from_utf8_lossy(rec.get(j).unwrap_or_default())
                    .trim()
                    .to_string()
            })
            .collect();
        let missing: Vec<bool> = vals.iter().map(|v| is_na(v)).collect();
        if missing.iter().all(|m| *m) {
            return None;
        }
        if missing.iter().any(|m| *m) {
            for k in 0..4 {
                if missing[k] {
                    self.problem(
                        row,
                        names[k],
                        &vals[k],
                        "a bounding box needs all four coordinates or none",
                    );
                }
            }
            return None;
        }
        let mut out = [0u32; 4];
        let mut ok = true;
        for k in 0..4 {
            match parse_integral(&vals[k]) {
                Some(v) if v >= 0 && v <= i64::from(u32::MAX) => out[k] = v as u32,
                Some(v) if v < 0 => {
                    self.problem(
                        row,
                        names[k],
                        &vals[k],
                        "bounding-box coordinates must be >= 0",
                    );
                    ok = false;
                }
                _ => {
                    self.problem(
                        row,
                        names[k],
                        &vals[k],
                        "bounding-box coordinates must be integers",
                    );
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        if out[0] >= out[2] {
            self.problem(
                row,
                "x_1, x_2",
                &format!("{}, {}", vals[0], vals[2]),
                "x_1 must be less than x_2",
            );
            ok = false;
        }
        if out[1] >= out[3] {
            self.problem(
                row,
                "y_1, y_2",
                &format!("{}, {}", vals[1], vals[3]),
                "y_1 must be less than y_2",
            );
            ok = false;
        }
        ok.then_some(out)
    }

    fn check_query_labels(
        &mut self,
        rows: &[Row],
        opts: &ReadOptions,
        warnings: &mut Vec<DataframeWarning>,
    ) {
        let gallery: HashSet<i64> = rows
            .iter()
            .filter(|r| r.is_gallery)
            .map(|r| r.label)
            .collect();
        for r in rows
            .iter()
            .filter(|r| r.is_query && !gallery.contains(&r.label))
        {
            if opts.require_query_labels_in_gallery {
                self.problem(
                    r.row,
                    columns::LABEL,
                    &r.label.to_string(),
                    "no gallery item has this query's label",
                );
            } else {
                warnings.push(DataframeWarning::QueryLabelNotInGallery {
                    row: r.row,
                    label: r.label,
                });
            }
        }
    }

    fn check_files(&mut self, rows: &[Row], root: &Path) {
        for r in rows {
            let full = root.join(&r.path);
            if !full.is_file() {
                self.problem(
                    r.row,
                    columns::PATH,
                    &r.path.display().to_string(),
                    format!("no such file: {}", full.display()),
                );
            }
        }
    }
}

fn category_warnings(rows: &[Row], warnings: &mut Vec<DataframeWarning>) {
    let mut cats: BTreeMap<i64, BTreeSet<&str>> = BTreeMap::new();
    for r in rows {
        if let Some(c) = &r.category {
            cats.entry(r.label).or_default().insert(c);
        }
    }
    for (label, set) in cats {
        if set.len() > 1 {
            warnings.push(DataframeWarning::LabelWithManyCategories {
                label,
                categories: set.into_iter().map(str::to_string).collect(),
            });
        }
    }
}

/// The label remapping OML applies before training: `original → 0..N−1`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelMap {
    /// `original → new`.
    pub forward: BTreeMap<i64, i64>,
    /// `new → original`, indexed by the new label.
    pub inverse: Vec<i64>,
}

impl LabelMap {
    /// Number of distinct labels.
    pub fn len(&self) -> usize {
        self.inverse.len()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.inverse.is_empty()
    }
}

impl Dataframe {
    /// The rows of one split (spreadsheet row numbers kept), with the same columns.
    pub fn split(&self, split: Split) -> Dataframe {
        self.filter(|r| r.split == split)
    }

    /// The rows for which `keep` is true; warnings are dropped.
    pub fn filter(&self, keep: impl Fn(&Row) -> bool) -> Dataframe {
        Dataframe {
            rows: self.rows.iter().filter(|r| keep(r)).cloned().collect(),
            columns: self.columns,
            warnings: Vec::new(),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Labels of all rows, in order.
    pub fn labels(&self) -> Vec<i64> {
        self.rows.iter().map(|r| r.label).collect()
    }

    /// Number of queries whose label no gallery item has (they have no ground truth).
    pub fn n_queries_without_gallery_label(&self) -> usize {
        self.warnings
            .iter()
            .filter(|w| matches!(w, DataframeWarning::QueryLabelNotInGallery { .. }))
            .count()
    }

    /// `label → category` (the last row wins, as in OML); `None` without a category column.
    pub fn label_to_category(&self) -> Option<BTreeMap<i64, String>> {
        if !self.columns.category {
            return None;
        }
        Some(
            self.rows
                .iter()
                .filter_map(|r| Some((r.label, r.category.clone()?)))
                .collect(),
        )
    }

    /// OML's label remapping for training: every label gets a new id in `0..N−1`, train labels
    /// first (train rows in file order, then validation rows), each label numbered at its first
    /// appearance. A label shared by both splits keeps one id.
    pub fn label_map(&self) -> LabelMap {
        let mut map = LabelMap::default();
        let ordered = self
            .rows
            .iter()
            .filter(|r| r.split == Split::Train)
            .chain(self.rows.iter().filter(|r| r.split == Split::Validation));
        for r in ordered {
            if let std::collections::btree_map::Entry::Vacant(e) = map.forward.entry(r.label) {
                e.insert(map.inverse.len() as i64);
                map.inverse.push(r.label);
            }
        }
        map
    }

    /// A copy with labels remapped by [`label_map`](Self::label_map), and the map.
    pub fn remap_labels(&self) -> (Dataframe, LabelMap) {
        let map = self.label_map();
        let mut out = self.clone();
        for r in &mut out.rows {
            r.label = map.forward[&r.label];
        }
        (out, map)
    }

    /// Writes the dataframe as OML's CSV (pandas style: `True`/`False`, empty flags on train
    /// rows), with the optional columns it has.
    pub fn to_csv_string(&self) -> String {
        let mut header = vec!["label", "path", "split", "is_query", "is_gallery"];
        if self.columns.category {
            header.push(columns::CATEGORY);
        }
        if self.columns.sequence {
            header.push(columns::SEQUENCE);
        }
        if self.columns.bbox {
            header.extend(columns::BBOX);
        }
        let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
        let mut write = |fields: Vec<String>| {
            // Writing to a Vec cannot fail.
            let _ = w.write_record(&fields);
        };
        write(header.iter().map(|s| s.to_string()).collect());
        let py_bool = |b: bool| if b { "True" } else { "False" }.to_string();
        for r in &self.rows {
            let mut f = vec![
                r.label.to_string(),
                r.path.to_string_lossy().into_owned(),
                r.split.to_string(),
            ];
            match r.split {
                Split::Train => f.extend([String::new(), String::new()]),
                Split::Validation => f.extend([py_bool(r.is_query), py_bool(r.is_gallery)]),
            }
            if self.columns.category {
                f.push(r.category.clone().unwrap_or_default());
            }
            if self.columns.sequence {
                f.push(r.sequence.clone().unwrap_or_default());
            }
            if self.columns.bbox {
                match r.bbox {
                    // Column order x_1, x_2, y_1, y_2.
                    Some([x1, y1, x2, y2]) => f.extend([x1, x2, y1, y2].map(|v| v.to_string())),
                    None => f.extend(std::iter::repeat_n(String::new(), 4)),
                }
            }
            write(f);
        }
        let bytes = w.into_inner().unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }

    /// Writes [`to_csv_string`](Self::to_csv_string) to `path` atomically
    /// ([`oml_interfaces::fs::write_atomic`]).
    pub fn write_csv(&self, path: impl AsRef<Path>) -> Result<(), DataframeError> {
        let path = path.as_ref();
        oml_interfaces::fs::write_atomic(path, self.to_csv_string().as_bytes()).map_err(|source| {
            DataframeError::Io {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// Each label's row positions (in this dataframe), labels ascending.
    pub fn label_groups(&self) -> BTreeMap<i64, Vec<usize>> {
        let mut m: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (i, r) in self.rows.iter().enumerate() {
            m.entry(r.label).or_default().push(i);
        }
        m
    }
}

/// Sequence ids as small integers (equal strings, equal ids), as OML's `pd.factorize(sort=True)`.
pub fn factorize(values: &[String]) -> Vec<usize> {
    let sorted: BTreeSet<&str> = values.iter().map(String::as_str).collect();
    let ids: HashMap<&str, usize> = sorted
        .into_iter()
        .enumerate()
        .map(|(i, s)| (s, i))
        .collect();
    values.iter().map(|v| ids[v.as_str()]).collect()
}
