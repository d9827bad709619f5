//! The parameters of a convolution and the shapes they give, checked once for every pass.

use crate::error::{Error, Result};

/// Stride, padding, dilation (each `[h, w]`) and groups of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Step between output pixels, in input pixels.
    pub stride: [usize; 2],
    /// Zero rows added at top and bottom, zero columns at left and right.
    pub padding: [usize; 2],
    /// Spacing between kernel taps.
    pub dilation: [usize; 2],
    /// Input and output channels are split into this many independent groups.
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl Conv2dParams {
    /// Square stride and padding, no dilation, one group.
    pub fn new(stride: usize, padding: usize) -> Self {
        Conv2dParams {
            stride: [stride, stride],
            padding: [padding, padding],
            ..Default::default()
        }
    }

    /// The output shape for an input of shape `x` and a weight of shape `weight`, after
    /// checking that they and the parameters fit together.
    pub fn output_shape(&self, x: [usize; 4], weight: [usize; 4]) -> Result<[usize; 4]> {
        const OP: &str = "conv2d";
        let [n, cin, h, w] = x;
        let [cout, cin_g, kh, kw] = weight;
        if self.stride.contains(&0) || self.dilation.contains(&0) {
            return Err(Error::param(
                OP,
                format!(
                    "stride {:?} and dilation {:?} must be at least 1",
                    self.stride, self.dilation
                ),
            ));
        }
        let g = self.groups;
        if g == 0 || cin % g != 0 || cout % g != 0 {
            return Err(Error::param(
                OP,
                format!("groups = {g} must divide both input channels ({cin}) and output channels ({cout})"),
            ));
        }
        if cin_g * g != cin {
            return Err(Error::shape(
                OP,
                format!(
                    "weight {weight:?} has {cin_g} input channels per group, but the input has {cin} channels in {g} group(s) (expected {})",
                    cin / g
                ),
            ));
        }
        // Kernels index with 32-bit integers (signed where padding makes coordinates
        // negative): every size and parameter, and every coordinate they can form, must
        // fit, or the arithmetic would wrap into a wrong answer. Checked here, once.
        const KERNEL_MAX: usize = i32::MAX as usize;
        let too_large = |what: String| {
            Error::param(
                OP,
                format!(
                    "{what} is too large for the kernels' 32-bit indices (at most {KERNEL_MAX}; input {x:?}, weight {weight:?}, {self:?})"
                ),
            )
        };
        for (what, v) in [
            ("batch", n),
            ("input channels", cin),
            ("height", h),
            ("width", w),
            ("output channels", cout),
            ("kernel height", kh),
            ("kernel width", kw),
            ("stride", self.stride[0].max(self.stride[1])),
            ("padding", self.padding[0].max(self.padding[1])),
            ("dilation", self.dilation[0].max(self.dilation[1])),
            ("groups", g),
        ] {
            if v > KERNEL_MAX {
                return Err(too_large(format!("{what} {v}")));
            }
        }
        let size = |len: usize, pad: usize, dil: usize, k: usize, s: usize, axis: &str| {
            let span = k
                .checked_sub(1)
                .and_then(|k1| dil.checked_mul(k1))
                .and_then(|d| d.checked_add(1))
                .filter(|&v| v <= KERNEL_MAX)
                .ok_or_else(|| too_large(format!("the dilated kernel's {axis}")))?;
            let padded = pad
                .checked_mul(2)
                .and_then(|p2| p2.checked_add(len))
                .filter(|&v| v <= KERNEL_MAX)
                .ok_or_else(|| too_large(format!("the padded input {axis}")))?;
            if padded < span {
                return Err(Error::shape(
                    OP,
                    format!(
                        "output {axis} would be below 1: padded input {axis} {padded} is smaller than the dilated kernel's {span} (input {x:?}, weight {weight:?}, {self:?})"
                    ),
                ));
            }
            Ok((padded - span) / s + 1)
        };
        let oh = size(
            h,
            self.padding[0],
            self.dilation[0],
            kh,
            self.stride[0],
            "height",
        )?;
        let ow = size(
            w,
            self.padding[1],
            self.dilation[1],
            kw,
            self.stride[1],
            "width",
        )?;
        Ok([n, cout, oh, ow])
    }
}
