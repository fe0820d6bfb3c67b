//! Arbitrary bytes into the dataframe CSV reader: it must never panic, and every problem it
//! reports must point at a spreadsheet row (>= 1).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oml_datasets::dataframe::{DataframeError, ReadOptions, parse_dataframe};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the options, so the fuzzer explores all of them.
    let (flags, csv) = data.split_first().unwrap_or((&0, &[]));
    let options = ReadOptions {
        require_split: flags & 1 == 0,
        require_query_labels_in_gallery: flags & 2 == 0,
        delimiter: if flags & 4 == 0 { b',' } else { b';' },
        ..Default::default()
    };
    match parse_dataframe(csv, "fuzz.csv", &options) {
        Ok(df) => {
            // A valid file survives a write/read round trip.
            let again = parse_dataframe(
                df.to_csv_string().as_bytes(),
                "again.csv",
                &ReadOptions {
                    delimiter: b',',
                    ..options
                },
            );
            assert!(again.is_ok(), "{:?}", again.err());
        }
        Err(DataframeError::Invalid { problems, .. }) => {
            assert!(!problems.is_empty() && problems.iter().all(|p| p.row >= 1));
        }
        Err(DataframeError::Io { .. }) => {}
    }
});
