//! reshape, transpose, permute, slice, concat, index_select, scatter_add, embedding.

use super::check::{check, randn};
use super::reference as r;

#[test]
fn reshape() {
    check(
        "reshape",
        &[randn(&[2, 3, 4], 30)],
        |g, v| g.reshape(v[0], &[6, 4]),
        |x| r::R::new(&[6, 4], x[0].data.clone()),
    );
}

#[test]
fn transpose_outer_axes() {
    check(
        "transpose",
        &[randn(&[2, 3, 4], 31)],
        |g, v| g.transpose(v[0], 0, 2),
        |x| r::permute(&x[0], &[2, 1, 0]),
    );
}

#[test]
fn permute_rank4() {
    // The attention head split [B, T, H, D] -> [B, H, T, D] and a less regular one.
    check(
        "permute",
        &[randn(&[2, 3, 2, 2], 32)],
        |g, v| g.permute(v[0], &[0, 2, 1, 3]),
        |x| r::permute(&x[0], &[0, 2, 1, 3]),
    );
    check(
        "permute2",
        &[randn(&[2, 3, 4], 33)],
        |g, v| g.permute(v[0], &[2, 0, 1]),
        |x| r::permute(&x[0], &[2, 0, 1]),
    );
}

#[test]
fn slice_middle_axis() {
    check(
        "slice",
        &[randn(&[2, 5, 3], 34)],
        |g, v| g.slice(v[0], 1, 1, 4),
        |x| r::slice(&x[0], 1, 1, 4),
    );
}

#[test]
fn slices_that_overlap_accumulate() {
    check(
        "slice-overlap",
        &[randn(&[6, 2], 35)],
        |g, v| {
            let a = g.slice(v[0], 0, 0, 4)?;
            let b = g.slice(v[0], 0, 2, 6)?;
            g.mul(a, b)
        },
        |x| {
            let (a, b) = (r::slice(&x[0], 0, 0, 4), r::slice(&x[0], 0, 2, 6));
            r::binary(&a, &b, |p, q| p * q)
        },
    );
}

#[test]
fn concat_three_along_axis1() {
    let xs = [
        randn(&[2, 1, 3], 36),
        randn(&[2, 3, 3], 37),
        randn(&[2, 2, 3], 38),
    ];
    check("concat", &xs, |g, v| g.concat(v, 1), |x| r::concat(x, 1));
}

#[test]
fn concat_last_axis() {
    let xs = [randn(&[3, 2], 39), randn(&[3, 4], 40)];
    check(
        "concat-last",
        &xs,
        |g, v| g.concat(v, 1),
        |x| r::concat(x, 1),
    );
}

#[test]
fn index_select_with_repeats() {
    let ids = [3, 0, 3, 1];
    check(
        "index_select",
        &[randn(&[2, 4, 3], 41)],
        |g, v| g.index_select(v[0], 1, &ids),
        |x| r::index_select(&x[0], 1, &ids),
    );
}

#[test]
fn index_select_last_axis() {
    let ids = [2, 2, 0];
    check(
        "index_select-last",
        &[randn(&[3, 4], 42)],
        |g, v| g.index_select(v[0], 1, &ids),
        |x| r::index_select(&x[0], 1, &ids),
    );
}

#[test]
fn scatter_add_with_repeats() {
    let ids = [1, 3, 1];
    check(
        "scatter_add",
        &[randn(&[4, 2], 43), randn(&[3, 2], 44)],
        |g, v| g.scatter_add(v[0], 0, &ids, v[1]),
        |x| r::scatter_add(&x[0], 0, &ids, &x[1]),
    );
}

#[test]
fn scatter_add_axis1() {
    let ids = [0, 0];
    check(
        "scatter_add-axis1",
        &[randn(&[2, 3, 2], 45), randn(&[2, 2, 2], 46)],
        |g, v| g.scatter_add(v[0], 1, &ids, v[1]),
        |x| r::scatter_add(&x[0], 1, &ids, &x[1]),
    );
}

#[test]
fn embedding_lookup() {
    // Token ids of a [B=2, T=3] batch into a [V=5, C=4] table; repeated ids accumulate.
    let ids = [4, 1, 1, 0, 4, 4];
    check(
        "embedding",
        &[randn(&[5, 4], 47)],
        |g, v| {
            let e = g.embedding(v[0], &ids)?;
            g.reshape(e, &[2, 3, 4])
        },
        |x| {
            let e = r::index_select(&x[0], 0, &ids);
            r::R::new(&[2, 3, 4], e.data)
        },
    );
}
