//! The forward and the stride-1 input gradient (the forward on the transposed, flipped
//! kernel) as F(m×m, 3×3): the filter transform once, then for each part of the batch the
//! input's staging and transform, the products (one GEMM per position of the α × α tile) and
//! the output transform through the shared store epilogue.

use super::plan::Plan;
use super::{input_transform, share, wino_texture, WinoArgs, FILTER, GEMM, OUTPUT};
use crate::error::Result;
use crate::gpu::{Specialised, StagingKind};
use crate::ops::conv2d::args::GemmCall;
use crate::record::{read, Cost, Grid, Recording};
use crate::tensor::Tensor;

/// Whether `t` allows the output transform's 4-pixel vec4 stores: rows of whole quads and a
/// view that starts and strides 4-aligned.
fn quad_rows(t: &Tensor) -> bool {
    t.shape()[3].is_multiple_of(4)
        && t.offset_u32().is_multiple_of(4)
        && t.batch_stride_u32().is_multiple_of(4)
}

impl super::Winograd {
    /// Records `c` (a forward, or a transposed input gradient) as F(m×m, 3×3): the filter
    /// transform, then for each part of the batch the input's staging, the input transform,
    /// the products and the output transform.
    pub(super) fn gemm(&self, rec: &mut Recording<'_>, c: &GemmCall<'_>, m: usize) -> Result<()> {
        let plan = Plan::new(rec.gpu(), &c.g, &c.p, m);
        let constants = [("WINO_M", m as f64)];
        let kernel = |spec| Specialised {
            spec,
            constants: &constants,
        };
        let [n, _, _, _] = c.g.x;
        let cout = c.g.y[1];
        let a2 = plan.alpha * plan.alpha;
        let base = WinoArgs {
            tiles_h: plan.tiles_h as u32,
            tiles_w: plan.tiles_w as u32,
            cq_in: plan.cq_in as u32,
            cout_pad: 4 * plan.cq as u32,
            transpose: c.transpose as u32,
            rows: plan.staged.rows as u32,
            ..Default::default()
        };
        let texture = wino_texture;

        // U = G g Gᵀ for every (input channel, output channel).
        let u = texture(rec, StagingKind::Weights, plan.filter_size())?;
        let threads = 4 * plan.cq_in * plan.cq;
        let w = WinoArgs {
            count: threads as u32,
            ..base
        };
        let bytes = 4 * (c.weight.numel() + 4 * a2 * threads) as u64;
        rec.launch(
            kernel(&FILTER),
            &[c.args(threads, 0).bytes(), bytemuck::bytes_of(&w)],
            &[Some(read(c.weight))],
            &[&u.view],
            Grid::Threads(threads as u64),
            Cost { flops: 0, bytes },
        )?;

        let total = n * plan.per_image();
        for images in plan.image_parts(rec.gpu(), n) {
            let t0 = images.start * plan.per_image();
            let real = images.len() * plan.per_image();
            let tiles = real.next_multiple_of(16);
            let part = WinoArgs {
                tiles: tiles as u32,
                real_tiles: real as u32,
                t0: t0 as u32,
                n0: images.start as u32,
                ..base
            };
            let v = input_transform(rec, &plan, c.x, &images, c.fusion.relu_input, &part, m)?;

            // M = V · U at each of the α² positions.
            let product = texture(rec, StagingKind::Activation, plan.product_size(tiles))?;
            let threads = a2 * tiles / 16 * plan.cq / 2;
            let w = WinoArgs {
                count: threads as u32,
                ..part
            };
            // The convention's FLOPs (every tap of the direct sum), this part's share.
            let flops = share(c.cost.flops, real, total);
            let bytes = 16 * (a2 * tiles * (plan.cq_in + plan.cq)) as u64;
            rec.launch(
                kernel(&GEMM),
                &[bytemuck::bytes_of(&w)],
                &[],
                &[&u.view, &v.view, &product.view],
                Grid::Threads(threads as u64),
                Cost { flops, bytes },
            )?;
            v.done(rec);

            // Y = Aᵀ M A through the store epilogue.
            let threads = real * cout.div_ceil(4);
            let w = WinoArgs {
                count: threads as u32,
                ..part
            };
            let mut a = c.args(threads, 0);
            a.vec4_ok = (quad_rows(c.out) && c.mask.is_none_or(quad_rows)) as u32;
            let [bias, out, mask] = c.outputs();
            let [out4, mask4] = c.outputs4();
            let outputs = m * m * real * cout * (1 + c.fusion.accumulate as usize);
            let bytes = 4 * (4 * a2 * real * plan.cq + outputs) as u64;
            rec.launch(
                kernel(&OUTPUT),
                &[a.bytes(), bytemuck::bytes_of(&w)],
                &[
                    Some(read(c.x)),
                    Some(read(c.weight)),
                    bias,
                    out,
                    mask,
                    out4,
                    mask4,
                ],
                &[&product.view],
                Grid::Threads(threads as u64),
                Cost { flops: 0, bytes },
            )?;
            product.done(rec);
        }
        u.done(rec);
        Ok(())
    }
}
