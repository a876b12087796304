//! Save/load round trips and malformed files.

use super::*;

pub(super) fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lithe-int8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn logits(m: &Int8Model, ws: &mut Workspace, input: Input<'_>) -> Vec<f32> {
    m.forward(ws, input).unwrap().to_vec()
}

#[test]
fn save_load_round_trip_is_bit_exact() {
    let bert = tiny_bert(60);
    let mut plan = QuantPlan::dynamic();
    plan.acts
        .insert("classifier".into(), ActQuant::Static(0.0123));
    plan.acts.insert(
        "encoder.layer.1.attention.self.key".into(),
        ActQuant::Static(0.05),
    );
    let bert = bert.to_int8(&plan).unwrap();
    let path = temp_path("bert.safetensors");
    bert.save(&path).unwrap();
    let loaded = Int8Model::load(&path).unwrap();
    assert_eq!(loaded.weight_bytes(), bert.weight_bytes());
    assert_eq!(loaded.max_seq(), 16);
    let (ids, lengths) = tokens(3, 10, 61);
    let input = Input::Tokens {
        ids: &ids,
        batch: 3,
        seq: 10,
        lengths: Some(&lengths),
    };
    let mut ws = bert.workspace(3, 10).unwrap();
    let a = logits(&bert, &mut ws, input);
    let b = logits(&loaded, &mut ws, input);
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    let file_len = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(file_len > bert.weight_bytes() && file_len < bert.weight_bytes() + 64 * 1024);

    // A model whose blocks no longer match its config (a layer dropped, as by depth pruning)
    // saves and loads as the model it is.
    let mut shallow = tiny_bert(64);
    shallow.encoder.layers.pop();
    let shallow = shallow.to_int8(&QuantPlan::dynamic()).unwrap();
    let path = temp_path("shallow.safetensors");
    shallow.save(&path).unwrap();
    let loaded = Int8Model::load(&path).unwrap();
    let a = logits(&shallow, &mut ws, input);
    assert_eq!(a, logits(&loaded, &mut ws, input));

    for distillation in [false, true] {
        let vit = tiny_vit(distillation, 62)
            .to_int8(&QuantPlan::dynamic())
            .unwrap();
        let path = temp_path(&format!("vit{distillation}.safetensors"));
        vit.save(&path).unwrap();
        let loaded = Int8Model::load(&path).unwrap();
        assert_eq!(loaded.image_shape(), Some([3, 8, 8]));
        let x = images(2, 63);
        let input = Input::Images {
            pixels: x.data(),
            batch: 2,
        };
        let mut ws = vit.workspace(2, 0).unwrap();
        let a = logits(&vit, &mut ws, input);
        let b = logits(&loaded, &mut ws, input);
        assert_eq!(a, b);
    }
}

/// The tensors and metadata of a safetensors file, owned, for rewriting.
pub(super) struct RawFile {
    pub(super) tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>,
    pub(super) metadata: std::collections::HashMap<String, String>,
}

impl RawFile {
    pub(super) fn read(path: &std::path::Path) -> RawFile {
        let bytes = std::fs::read(path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let tensors = st
            .tensors()
            .into_iter()
            .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
            .collect();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        RawFile {
            tensors,
            metadata: meta.metadata().clone().unwrap(),
        }
    }

    pub(super) fn write(&self, path: &std::path::Path) {
        let views: Vec<_> = self
            .tensors
            .iter()
            .map(|(n, d, s, b)| {
                (
                    n.as_str(),
                    safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
                )
            })
            .collect();
        let bytes = safetensors::serialize(views, Some(self.metadata.clone())).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    pub(super) fn tensor(
        &mut self,
        name: &str,
    ) -> &mut (String, safetensors::Dtype, Vec<usize>, Vec<u8>) {
        self.tensors.iter_mut().find(|t| t.0 == name).unwrap()
    }
}

#[test]
fn malformed_files_are_errors() {
    let bert = tiny_bert(70).to_int8(&QuantPlan::dynamic()).unwrap();
    let good = temp_path("good.safetensors");
    bert.save(&good).unwrap();
    let bad = temp_path("bad.safetensors");
    let load_rewritten = |edit: &dyn Fn(&mut RawFile)| {
        let mut raw = RawFile::read(&good);
        edit(&mut raw);
        raw.write(&bad);
        Int8Model::load(&bad)
    };

    // Truncated anywhere: in the data, in the header, before the header length.
    let bytes = std::fs::read(&good).unwrap();
    for cut in [bytes.len() - 3, 200, 5] {
        std::fs::write(&bad, &bytes[..cut]).unwrap();
        let r = Int8Model::load(&bad);
        assert!(
            matches!(r, Err(Error::Format { .. })),
            "cut at {cut}: {r:?}"
        );
    }
    // Not there at all.
    assert!(matches!(
        Int8Model::load(temp_path("absent.safetensors")),
        Err(Error::File { .. })
    ));

    // F32 where I8 is expected.
    let r = load_rewritten(&|raw| {
        let t = raw.tensor("classifier.weight");
        t.1 = safetensors::Dtype::F32;
        t.3 =
            t.3.iter()
                .flat_map(|&b| f32::from(b as i8).to_le_bytes())
                .collect();
    });
    match r {
        Err(Error::Format { msg, .. }) => assert!(msg.contains("classifier.weight"), "{msg}"),
        other => panic!("{other:?}"),
    }
    // A missing scale.
    let r = load_rewritten(&|raw| {
        raw.tensors
            .retain(|t| t.0 != "encoder.layer.1.intermediate.dense.weight_scale")
    });
    assert!(
        matches!(&r, Err(Error::MissingTensor { name }) if name == "encoder.layer.1.intermediate.dense.weight_scale"),
        "{r:?}"
    );
    // A weight of the wrong shape.
    let r = load_rewritten(&|raw| {
        let t = raw.tensor("pooler.dense.weight");
        t.2 = vec![32, 31];
        t.3.truncate(32 * 31);
    });
    assert!(
        matches!(&r, Err(Error::TensorShape { name, .. }) if name == "pooler.dense.weight"),
        "{r:?}"
    );
    // A LayerNorm of the wrong width.
    let r = load_rewritten(&|raw| {
        let t = raw.tensor("embeddings.LayerNorm.bias");
        t.2 = vec![31];
        t.3.truncate(31 * 4);
    });
    assert!(matches!(&r, Err(Error::TensorShape { .. })), "{r:?}");
    // A tensor nobody reads.
    let r = load_rewritten(&|raw| {
        raw.tensors
            .push(("extra".into(), safetensors::Dtype::F32, vec![1], vec![0; 4]))
    });
    assert!(
        matches!(&r, Err(Error::UnexpectedTensor { name }) if name == "extra"),
        "{r:?}"
    );
    // A weight of -128 (outside the symmetric range) and a NaN scale.
    let r = load_rewritten(&|raw| raw.tensor("classifier.weight").3[0] = 0x80);
    assert!(r.is_err());
    let r = load_rewritten(&|raw| {
        raw.tensor("classifier.weight_scale").3[..4].copy_from_slice(&f32::NAN.to_le_bytes())
    });
    assert!(r.is_err());
    // Metadata: corrupt JSON, missing fields, another version, an unknown mode, a config
    // that does not match the tensors.
    let edits: [(&str, Option<&str>); 7] = [
        ("act_quant", Some("{not json")),
        ("act_quant", Some(r#"{"classifier": "sometimes"}"#)),
        ("config", None),
        ("config", Some("[]")),
        ("format_version", Some("99")),
        ("heads", Some("[4]")),
        ("kind", Some("gpt")),
    ];
    for (key, value) in edits {
        let r = load_rewritten(&|raw| match value {
            Some(v) => {
                raw.metadata.insert(key.into(), v.into());
            }
            None => {
                raw.metadata.remove(key);
            }
        });
        assert!(
            matches!(&r, Err(Error::Format { .. })),
            "{key} = {value:?}: {r:?}"
        );
    }
    // A Linear without an activation mode.
    let r = load_rewritten(&|raw| {
        raw.metadata.insert("act_quant".into(), "{}".into());
    });
    assert!(matches!(&r, Err(Error::Format { .. })), "{r:?}");
    // A config whose vocabulary disagrees with the table.
    let r = load_rewritten(&|raw| {
        let c = raw.metadata["config"].replace("\"vocab_size\":50", "\"vocab_size\":51");
        raw.metadata.insert("config".into(), c);
    });
    assert!(matches!(&r, Err(Error::TensorShape { .. })), "{r:?}");
    // The untouched file still loads.
    assert!(load_rewritten(&|_| {}).is_ok());
}
