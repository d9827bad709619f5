//! The texture family's weight gradient (`shaders/conv2d/texture/backward_weight.wgsl`):
//! 16 output × 8 input channels a thread (4 for inputs of 1–4 channels) over staged x and
//! grad_out, split into partial sums.

use super::stage::{stage_activation, Extent};
use super::*;

impl Texture {
    /// One part of the weight gradient (see [`Family::backward_weight`]).
    pub(super) fn weight_part(
        &self,
        rec: &mut Recording<'_>,
        c: &WeightGradArgs<'_>,
    ) -> Result<()> {
        let [cout, cin, kh, kw] = c.g.w;
        let narrow = narrow_input(cin);
        let ci_block = if narrow { 4 } else { 8 };
        let base_threads = cin.div_ceil(ci_block) * cout.div_ceil(16) * kh * kw;
        let rows = c.g.y[0] * c.g.y[2];
        let per_max = rows_per_split(c.g.y[3], 2, "weight gradient")?;
        let (partials, per, cost) =
            Partials::for_weight_gradient(rec, c, rows, base_threads, per_max)?;
        let x_extent = Extent::input(&c.g, &c.p);
        let x_tex = stage_activation(rec, c.x, x_extent, c.fusion.relu_input)?;
        let g_tex = stage_activation(rec, c.grad_out, Extent::plain(c.g.y), false)?;
        let threads = base_threads * partials.splits;
        let mut a = ConvArgs::new(&c.g, &c.p, threads, c.fusion);
        a.relu_input = 0;
        a.per_split = per as u32;
        let staged = StagedArgs {
            rows: x_extent.rows as u32,
            ..Default::default()
        };
        let spec = if narrow {
            &BACKWARD_WEIGHT_NARROW
        } else {
            &BACKWARD_WEIGHT
        };
        let args = [a.bytes(), bytemuck::bytes_of(&staged)];
        let grid = Grid::Threads(threads as u64);
        let buffers = [Some(write(&partials.tensor))];
        rec.launch(
            spec,
            &args,
            &buffers,
            &[&x_tex.view, &g_tex.view],
            grid,
            cost,
        )?;
        x_tex.done(rec);
        g_tex.done(rec);
        partials.reduce_weight(rec, c)
    }
}
