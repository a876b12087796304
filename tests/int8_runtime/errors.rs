//! Every bad input is an error, never a panic.

use super::*;

#[test]
fn bad_inputs_are_errors() {
    let bert = tiny_bert(50).to_int8(&QuantPlan::dynamic()).unwrap();
    let vit = tiny_vit(false, 51).to_int8(&QuantPlan::dynamic()).unwrap();
    assert!(matches!(
        bert.workspace(0, 4),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        bert.workspace(1, 17),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        bert.workspace(1, 0),
        Err(Error::InvalidArgument { .. })
    ));
    let mut ws = bert.workspace(2, 8).unwrap();
    let ids = [1u32; 27];
    let tok = |batch, seq, lengths| Input::Tokens {
        ids: &ids[..batch * seq],
        batch,
        seq,
        lengths,
    };
    // Bigger than the workspace.
    assert!(matches!(
        bert.forward(&mut ws, tok(3, 8, None)),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        bert.forward(&mut ws, tok(1, 9, None)),
        Err(Error::Shape { .. })
    ));
    // Empty.
    assert!(matches!(
        bert.forward(&mut ws, tok(0, 8, None)),
        Err(Error::Empty { .. })
    ));
    assert!(matches!(
        bert.forward(&mut ws, tok(2, 0, None)),
        Err(Error::Empty { .. })
    ));
    // Ids that do not fill [B, T].
    let short = Input::Tokens {
        ids: &ids[..5],
        batch: 2,
        seq: 3,
        lengths: None,
    };
    assert!(matches!(
        bert.forward(&mut ws, short),
        Err(Error::Shape { .. })
    ));
    // A token id beyond the vocabulary.
    let bad_id = [1u32, 50, 2];
    let input = Input::Tokens {
        ids: &bad_id,
        batch: 1,
        seq: 3,
        lengths: None,
    };
    assert!(matches!(
        bert.forward(&mut ws, input),
        Err(Error::Index {
            index: 50,
            size: 50,
            ..
        })
    ));
    // Lengths: 0, beyond the sequence, wrong count.
    for lengths in [&[0usize, 2][..], &[2, 4], &[2]] {
        let r = bert.forward(&mut ws, tok(2, 3, Some(lengths)));
        assert!(
            matches!(r, Err(Error::InvalidArgument { .. } | Error::Shape { .. })),
            "{lengths:?}: {r:?}"
        );
    }
    // Images to a text model and tokens to an image model.
    let x = images(1, 52);
    let img = Input::Images {
        pixels: x.data(),
        batch: 1,
    };
    assert!(matches!(
        bert.forward(&mut ws, img),
        Err(Error::InvalidArgument { .. })
    ));
    let mut vws = vit.workspace(2, 0).unwrap();
    assert!(matches!(
        vit.forward(&mut vws, tok(1, 3, None)),
        Err(Error::InvalidArgument { .. })
    ));
    // A wrong pixel count, too many images, a NaN pixel.
    let short = Input::Images {
        pixels: &x.data()[1..],
        batch: 1,
    };
    assert!(matches!(
        vit.forward(&mut vws, short),
        Err(Error::Shape { .. })
    ));
    let three = images(3, 53);
    let input = Input::Images {
        pixels: three.data(),
        batch: 3,
    };
    assert!(matches!(
        vit.forward(&mut vws, input),
        Err(Error::Shape { .. })
    ));
    let mut nan = x.data().to_vec();
    nan[7] = f32::NAN;
    assert!(
        vit.forward(
            &mut vws,
            Input::Images {
                pixels: &nan,
                batch: 1
            }
        )
        .is_err()
    );
    // A workspace of another model.
    assert!(matches!(
        vit.forward(&mut ws, img),
        Err(Error::InvalidArgument { .. })
    ));
    // Still usable after all the errors.
    assert!(bert.forward(&mut ws, tok(2, 8, None)).is_ok());
    assert_eq!(vit.hidden(&mut vws, img).unwrap().len(), 5 * 32);
}

// ---------------------------------------------------------------------------------------------
// Files
