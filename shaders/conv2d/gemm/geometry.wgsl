// conv2d/gemm/geometry.wgsl — the GEMM family's problem geometry as pipeline-overridable
// constants, prepended to its kernels.
//
// The host compiles one pipeline per conv geometry (family/gemm.rs: `geometry_constants`,
// from the same Geometry and Conv2dParams that fill the uniform arguments), so every
// division and modulo of the implicit-GEMM index arithmetic — a K index into (tap, ci), a tap
// into (ky, kx), a flat pixel into (n, oy, ox) — is by a constant the GPU's compiler turns
// into a multiply and a shift, and loops over taps have constant trip counts. The batch and
// the views' offsets and strides stay in the uniform `p` (they change between calls of one
// shape: a dense block's layers read ever wider views of one buffer).
//
// Contract: each G_* equals the field of `p` it names (G_CIN = p.cin, …), for the problem
// the kernel is launched on (for an input gradient, the transposed problem).

override G_CIN: u32;
override G_H: u32;
override G_W: u32;
override G_COUT: u32;
override G_OH: u32;
override G_OW: u32;
override G_KH: u32;
override G_KW: u32;
override G_SH: u32;
override G_SW: u32;
override G_PH: u32;
override G_PW: u32;
override G_DH: u32;
override G_DW: u32;
