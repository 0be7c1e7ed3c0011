//! The CTranslate2 reader and the Hugging Face loader agree, and bad model files give clear
//! errors.

use crate::common;

use advox::model::{ct2::parse_ct2, load_weights, provision};
use candle_core::Device;

fn ct2_dir() -> std::path::PathBuf {
    common::model_dir();
    let dir = provision::ct2_dir(provision::DEFAULT_MODEL);
    assert!(
        provision::is_model_dir(&dir),
        "{} must hold the CTranslate2 files after fetching",
        dir.display()
    );
    dir
}

#[test]
fn ct2_and_hf_layouts_give_identical_tensors() {
    let (cfg_ct2, w_ct2) = load_weights(&ct2_dir(), &Device::Cpu).unwrap();
    let (cfg_hf, w_hf) = load_weights(
        &provision::model_dir(provision::DEFAULT_MODEL),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(cfg_ct2, cfg_hf);
    assert_eq!(cfg_ct2.d_model, 384);
    assert_eq!(cfg_ct2.encoder_layers, 4);
    assert_eq!(cfg_ct2.decoder_attention_heads, 6);
    assert_eq!(cfg_ct2.vocab_size, 51864);
    assert!(!cfg_ct2.is_multilingual());
    let mut names: Vec<_> = w_ct2.tensors.keys().cloned().collect();
    names.sort();
    let mut hf_names: Vec<_> = w_hf.tensors.keys().cloned().collect();
    hf_names.sort();
    assert_eq!(names, hf_names);
    // 4 encoder layers x 15 + 4 decoder layers x 24 + 11 others.
    assert_eq!(names.len(), 4 * 15 + 4 * 24 + 11);
    for name in names {
        let a = &w_ct2.tensors[&name];
        let b = &w_hf.tensors[&name];
        assert_eq!(a.dims(), b.dims(), "{name}");
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(a == b, "{name} differs");
    }
}

#[test]
fn truncated_or_foreign_model_files_are_rejected_clearly() {
    let bytes = std::fs::read(ct2_dir().join("model.bin")).unwrap();
    let path = std::path::Path::new("model.bin");
    for cut in [0, 3, 17, 200, bytes.len() / 2, bytes.len() - 70] {
        let err = parse_ct2(&bytes[..cut], path).expect_err("truncated file must fail");
        assert!(err.to_string().contains("model.bin"), "{err}");
    }
    let err = parse_ct2(b"\xff\xff\xff\xffgarbage", path).unwrap_err();
    assert!(err.to_string().contains("not a CTranslate2 model"), "{err}");

    let dir = std::env::temp_dir().join(format!("advox-badmodel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = load_weights(&dir, &Device::Cpu).unwrap_err();
    assert!(
        err.to_string().contains("neither model.safetensors"),
        "{err}"
    );
    std::fs::write(dir.join("model.safetensors"), b"not safetensors").unwrap();
    std::fs::copy(
        common::model_dir().join("config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    let err = load_weights(&dir, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("not a safetensors file"), "{err}");
}
