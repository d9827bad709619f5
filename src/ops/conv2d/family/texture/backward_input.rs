//! The texture family's input gradient of a conv of any stride, by stride class
//! (`shaders/conv2d/texture/backward_input.wgsl`); stride-1 input gradients run the forward
//! kernel on the transposed problem instead (`mod.rs`).

use super::stage::{stage_activation, StridedInput};
use super::*;

impl Texture {
    /// The input gradient of a conv of any stride, by stride class, and by parts of the
    /// batch or of grad_out's channels where staging it whole would exceed the budget.
    pub(super) fn backward_input_strided(
        &self,
        rec: &mut Recording<'_>,
        c: &InputGradArgs<'_>,
    ) -> Result<()> {
        let plan = StridedInput::new(&c.g, &c.p);
        let w = stage_weights(rec, c.weight, true)?;
        let ([n, cin, h, _], cout, cost) = (c.g.x, c.g.y[1], c.cost());
        let whole = WeightRows {
            groups: cout.div_ceil(4),
            c0: 0,
        };
        let blocks = cin.div_ceil(if plan.narrow { 4 } else { 8 });
        let per_image = c.p.stride[1] * h.next_multiple_of(c.p.stride[0]) * plan.blocks * blocks;
        match parts(
            rec.gpu(),
            c.g.y,
            plan.extent,
            per_image,
            target_threads(rec.gpu()),
        ) {
            Parts::Batch(images) => {
                for r in images {
                    let (x, go) = (part(rec, c.x, &r)?, part(rec, c.grad_out, &r)?);
                    let gx = part(rec, c.grad_x, &r)?;
                    let g = c.g.with_batch(r.len());
                    let a = InputGradArgs {
                        g,
                        x: &x,
                        grad_out: &go,
                        grad_x: &gx,
                        ..*c
                    };
                    self.strided_part(rec, &a, &plan, &w, whole, share(cost, &r, n))?;
                }
            }
            Parts::Channels(channels) => {
                for (k, r) in channels.into_iter().enumerate() {
                    let go = rebase(rec.gpu(), &c.grad_out.channels(r.clone())?);
                    let mut g = c.g;
                    g.y[1] = r.len();
                    g.w[0] = r.len();
                    let fusion = c.fusion.after_part(k);
                    let a = InputGradArgs {
                        g,
                        grad_out: &go,
                        fusion,
                        ..*c
                    };
                    let rows = WeightRows {
                        c0: r.start,
                        ..whole
                    };
                    self.strided_part(rec, &a, &plan, &w, rows, share(cost, &r, cout))?;
                }
            }
        }
        w.done(rec);
        Ok(())
    }

    /// One part of [`Texture::backward_input_strided`].
    fn strided_part(
        &self,
        rec: &mut Recording<'_>,
        c: &InputGradArgs<'_>,
        plan: &StridedInput,
        w: &Staged,
        rows: WeightRows,
        cost: Cost,
    ) -> Result<()> {
        let (g, p) = (&c.g, &c.p);
        let g_tex = stage_activation(rec, c.grad_out, plan.extent, false)?;
        // The transposed problem: grad_out in, grad_x out; the forward's kernel parameters.
        let t = Geometry {
            x: g.y,
            w: [g.x[1], g.y[1], g.w[2], g.w[3]],
            y: g.x,
        };
        let blocks = g.x[1].div_ceil(if plan.narrow { 4 } else { 8 });
        let rows_hi = g.x[2].div_ceil(p.stride[0]);
        let threads = p.stride[1] * p.stride[0] * g.x[0] * rows_hi * plan.blocks * blocks;
        let call = GemmCall {
            g: t,
            p: c.p,
            x: c.grad_out,
            weight: c.weight,
            transpose: true,
            bias: None,
            out: c.grad_x,
            mask: c.mask(),
            fusion: Fusion {
                relu_input: false,
                accumulate: c.fusion.accumulate,
            },
            cost,
        };
        let mut a = call.args(threads, blocks);
        a.relu_input = 0;
        let staged = StagedArgs {
            rows: plan.extent.rows as u32,
            left: plan.extent.left as u32,
            blocks: plan.blocks as u32,
            w_groups: rows.groups as u32,
            w_c0: rows.c0 as u32,
            ..Default::default()
        };
        let spec = if plan.narrow {
            &BACKWARD_INPUT_NARROW
        } else {
            &BACKWARD_INPUT
        };
        let args = [a.bytes(), bytemuck::bytes_of(&staged)];
        let grid = Grid::Threads(threads as u64);
        let buffers = call.outputs();
        let textures = [&g_tex.view, &w.view];
        rec.launch(spec, &args, &buffers, &textures, grid, call.cost)?;
        g_tex.done(rec);
        Ok(())
    }
}
