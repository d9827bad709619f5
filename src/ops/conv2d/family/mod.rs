//! The conv kernel families, one module each next to its shaders (`shaders/conv2d/<family>/`):
//! each implements [`Family`](super::select::Family) — what it supports, and how it records
//! each pass — and refuses what it cannot do; `select.rs` chooses among them.

pub(crate) mod direct;
pub(crate) mod gemm;
pub(crate) mod pack;
pub(crate) mod pixel;
pub(crate) mod regblock;
pub(crate) mod shaped;
pub(crate) mod texture;
