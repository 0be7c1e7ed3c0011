//! The CTranslate2 `model.bin` parser on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = advox::model::ct2::parse_ct2(data, Path::new("fuzz/model.bin"));
});
