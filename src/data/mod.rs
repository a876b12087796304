//! Datasets: readers for the formats lithe trains on.

pub mod idx;
