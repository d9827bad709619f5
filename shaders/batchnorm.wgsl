// batchnorm.wgsl — BatchNorm2d as PyTorch computes it, per channel c of an NCHW view x.
//
// Contract (Bn args at binding 0; x, grad_out and the output are views: element (n, c, p) of
// view v lives at v_off + n * v_bs + c * hw + p):
//   batchnorm_stat_sums     partials[s][c] = (Σ d, Σ d²), d = x - shift_c, over split s of
//                           channel c's n·hw elements; shift_c = chan[shift_row][c], or 0
//                           where shift_row = NO_ROW.                bindings 1: x, 4, 5
//   batchnorm_grad_sums     partials[s][c] = (Σ g, Σ g·(x - mean_c)), g = grad_out, mean_c =
//                           chan[MEAN][c]; with `relu`, g = grad_out where the forward's
//                           output normed(x) > 0, else 0 (the backward of relu(bn(x)), its
//                           mask recomputed from chan).             bindings 1: x, 2: g, 4, 5
//     One workgroup per (c, split), c fastest (count = c * splits); its lanes stride over the
//     split's elements (`per_split`: 64 a lane; more only past 268M a channel, so no loop
//     here or in the finish passes 65,535), then a tree in workgroup memory.
//   batchnorm_finish_stats  one thread per channel, by `mode`:
//     MODE_MEAN   chan[MEAN] = Σ_s Σ d / count                        (d = x: the first pass)
//     MODE_TRAIN  with d = x - chan[MEAN] (the second pass): mean' = mean + Σd / count,
//                 var = (Σd² - (Σd)² / count) / count (biased; the corrected two-pass sum),
//                 chan[MEAN] = mean', chan[INVSTD] = 1/sqrt(var + eps); running_mean and
//                 running_var ← (1 - momentum)·old + momentum·(mean', var·count/(count-1))
//     MODE_EVAL   chan[MEAN] = running_mean, chan[INVSTD] = 1/sqrt(running_var + eps)
//     then chan[SCALE] = weight·invstd, chan[SHIFT] = bias.
//     MODE_STATS  the batch statistics alone, as MODE_TRAIN computes them, into a block's
//                 table of every feature map's: stats[stats_off + c] = mean',
//                 stats[stats_stride + stats_off + c] = the biased variance; nothing else.
//                                           bindings 4, 5, 6: weight, 7: bias, 8: rm, 9: rv,
//                                           12: stats
//   batchnorm_finish_given  one thread per channel: MODE_TRAIN's finish from the statistics
//     a MODE_STATS pass put in stats (channel c of x at stats_off + c) — no reduction: the
//     statistics of a feature map computed once, for every BatchNorm that reads it.
//                                           bindings 5, 6, 7, 8, 9, 12
//   batchnorm_finish_grads  one thread per channel, from batchnorm_grad_sums' partials:
//     grad_bias (=|+=) Σg, grad_weight (=|+=) invstd·Σg(x-mean); chan[K1] = weight·invstd and,
//     training (`mode` = MODE_TRAIN), chan[K2] = Σg / count, chan[K3] = invstd²·Σg(x-mean) /
//     count (the gradient through the batch statistics), else 0.
//                                           bindings 4, 5, 6: weight, 10: grad_weight, 11: grad_bias
//   batchnorm_apply         out[v] = relu_if(normed(x)), normed(x) = (x - mean)·chan[SCALE] +
//                           chan[SHIFT], centred first: x·scale and mean·scale would cancel
//                                                                bindings 1, 3: out, 5
//   batchnorm_backward_input  grad_x (=|+=) K1·(g - K2 - (x - mean)·K3), g masked as in
//                           batchnorm_grad_sums with `relu`      bindings 1, 2, 3, 5
// NaN propagates: it reaches its channel's statistics, and from them every element of the
// channel, as in PyTorch. chan is [CHAN_ROWS][c].

struct Bn {
    n: u32, c: u32, hw: u32, splits: u32,   // x's shape (hw = H·W); splits of a channel's sum
    x_off: u32, x_bs: u32,                  // x's view
    g_off: u32, g_bs: u32,                  // grad_out's view
    o_off: u32, o_bs: u32,                  // the output's view (out or grad_x)
    per_split: u32,                         // elements of a channel one split sums
    mode: u32,                              // MODE_* (finish kernels)
    count: f32,                             // n·hw, the elements of a channel
    eps: f32,
    momentum: f32,
    accumulate: u32,                        // 1: outputs are added to, 0: overwritten
    shift_row: u32,                         // batchnorm_stat_sums' shift: a chan row or NO_ROW
    relu: u32,                              // apply: ReLU after the affine map; backward: its mask
    stats_off: u32, stats_stride: u32,      // MODE_STATS and finish_given: channel 0's column
                                            // in stats, and its row length
}

const MEAN: u32 = 0u;
const INVSTD: u32 = 1u;
const SCALE: u32 = 2u;
const SHIFT: u32 = 3u;
const K1: u32 = 4u;
const K2: u32 = 5u;
const K3: u32 = 6u;
const NO_ROW: u32 = 0xffffffffu;

const MODE_MEAN: u32 = 0u;
const MODE_TRAIN: u32 = 1u;
const MODE_EVAL: u32 = 2u;
const MODE_STATS: u32 = 3u;

@group(0) @binding(0) var<uniform> a: Bn;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;
@group(0) @binding(5) var<storage, read_write> chan: array<f32>;
@group(0) @binding(6) var<storage, read_write> weight: array<f32>;
@group(0) @binding(7) var<storage, read_write> bias: array<f32>;
@group(0) @binding(8) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(9) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(10) var<storage, read_write> grad_weight: array<f32>;
@group(0) @binding(11) var<storage, read_write> grad_bias: array<f32>;
@group(0) @binding(12) var<storage, read_write> stats: array<f32>;

var<workgroup> sum1: array<f32, WORKGROUP_SIZE>;
var<workgroup> sum2: array<f32, WORKGROUP_SIZE>;

fn chan_at(row: u32, c: u32) -> f32 {
    return chan[row * a.c + c];
}

// Element t (of n·hw) of channel c in a view (off, bs).
fn at(t: u32, c: u32, off: u32, bs: u32) -> u32 {
    return off + (t / a.hw) * bs + c * a.hw + t % a.hw;
}

// The elements [x, y) of channel c that workgroup wg's split sums, and its channel.
fn split_of(wg: u32) -> vec3<u32> {
    let c = wg % a.c;
    let s = wg / a.c;
    let total = a.n * a.hw;
    let t0 = s * a.per_split;
    return vec3<u32>(c, t0, min(t0 + a.per_split, total));
}

// Tree reduction of the lanes' two sums; lane 0 writes the split's partials. `wg` is
// uniform across the workgroup, so every lane reaches the barriers.
fn reduce_and_store(wg: u32, lid: u32, s1: f32, s2: f32) {
    sum1[lid] = s1;
    sum2[lid] = s2;
    workgroupBarrier();
    for (var width = WORKGROUP_SIZE / 2u; width > 0u; width /= 2u) {
        if lid < width {
            sum1[lid] += sum1[lid + width];
            sum2[lid] += sum2[lid + width];
        }
        workgroupBarrier();
    }
    if lid == 0u && wg < a.c * a.splits {
        let c = wg % a.c;
        let s = wg / a.c;
        partials[(s * a.c + c) * 2u] = sum1[0];
        partials[(s * a.c + c) * 2u + 1u] = sum2[0];
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn batchnorm_stat_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let wg = workgroup_index(wid, nwg);
    var s1 = 0.0;
    var s2 = 0.0;
    if wg < a.c * a.splits {
        let span = split_of(wg);
        let c = span.x;
        let shift = select(0.0, chan_at(a.shift_row, c), a.shift_row != NO_ROW);
        for (var t = span.y + lid; t < span.z; t += WORKGROUP_SIZE) {
            let d = x[at(t, c, a.x_off, a.x_bs)] - shift;
            s1 += d;
            s2 += d * d;
        }
    }
    reduce_and_store(wg, lid, s1, s2);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn batchnorm_grad_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let wg = workgroup_index(wid, nwg);
    var s1 = 0.0;
    var s2 = 0.0;
    if wg < a.c * a.splits {
        let span = split_of(wg);
        let c = span.x;
        let mean = chan_at(MEAN, c);
        for (var t = span.y + lid; t < span.z; t += WORKGROUP_SIZE) {
            let xv = x[at(t, c, a.x_off, a.x_bs)];
            let gv = masked_grad(g[at(t, c, a.g_off, a.g_bs)], xv, c);
            s1 += gv;
            s2 += gv * (xv - mean);
        }
    }
    reduce_and_store(wg, lid, s1, s2);
}

// The forward's output before any ReLU; one function, so the backward's mask is computed
// exactly as the forward computed the value.
fn normed(xv: f32, c: u32) -> f32 {
    return (xv - chan_at(MEAN, c)) * chan_at(SCALE, c) + chan_at(SHIFT, c);
}

// grad_out, or 0 where `relu` and the forward's ReLU let nothing through (as ReLU's own
// backward: normed(x) <= 0; NaN passes).
fn masked_grad(gv: f32, xv: f32, c: u32) -> f32 {
    return select(gv, select(0.0, gv, relu_grad_passes(normed(xv, c))), a.relu != 0u);
}

// Σ over splits of channel c's partials (k: 0 the first sum, 1 the second), in split order.
fn total(c: u32, k: u32) -> f32 {
    var acc = 0.0;
    for (var s = 0u; s < a.splits; s++) {
        acc += partials[(s * a.c + c) * 2u + k];
    }
    return acc;
}

// Channel c's batch mean and biased variance from the second pass's partials (the
// deviations from the first pass's mean, in chan[MEAN]).
fn batch_mean_var(c: u32) -> vec2<f32> {
    let d1 = total(c, 0u);
    let d2 = total(c, 1u);
    let mean = chan_at(MEAN, c) + d1 / a.count;
    // Rounding can take the difference below 0; NaN stays NaN (max would drop it on
    // drivers that assume no NaN).
    let m2 = d2 - d1 * d1 / a.count;
    return vec2<f32>(mean, select(max(m2, 0.0), m2, is_nan(m2)) / a.count);
}

// A training forward's finish from channel c's batch statistics: the running statistics
// moved, and the channel state.
fn finish_train(c: u32, mean: f32, var_biased: f32) {
    let invstd = 1.0 / sqrt(var_biased + a.eps);
    let unbiased = var_biased * a.count / (a.count - 1.0);
    running_mean[c] = (1.0 - a.momentum) * running_mean[c] + a.momentum * mean;
    running_var[c] = (1.0 - a.momentum) * running_var[c] + a.momentum * unbiased;
    store_chan(c, mean, invstd);
}

fn store_chan(c: u32, mean: f32, invstd: f32) {
    chan[MEAN * a.c + c] = mean;
    chan[INVSTD * a.c + c] = invstd;
    chan[SCALE * a.c + c] = weight[c] * invstd;
    chan[SHIFT * a.c + c] = bias[c];
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn batchnorm_finish_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let c = thread_index(wid, nwg, lid);
    if c >= a.c { return; }
    if a.mode == MODE_MEAN {
        chan[MEAN * a.c + c] = total(c, 0u) / a.count;
    } else if a.mode == MODE_STATS {
        let mv = batch_mean_var(c);
        stats[a.stats_off + c] = mv.x;
        stats[a.stats_stride + a.stats_off + c] = mv.y;
    } else if a.mode == MODE_TRAIN {
        let mv = batch_mean_var(c);
        finish_train(c, mv.x, mv.y);
    } else {
        store_chan(c, running_mean[c], 1.0 / sqrt(running_var[c] + a.eps));
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn batchnorm_finish_given(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let c = thread_index(wid, nwg, lid);
    if c >= a.c { return; }
    finish_train(c, stats[a.stats_off + c], stats[a.stats_stride + a.stats_off + c]);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn batchnorm_finish_grads(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let c = thread_index(wid, nwg, lid);
    if c >= a.c { return; }
    let sg = total(c, 0u);
    let sgx = total(c, 1u);
    let invstd = chan_at(INVSTD, c);
    let gw = sgx * invstd;
    if a.accumulate != 0u {
        grad_weight[c] += gw;
        grad_bias[c] += sg;
    } else {
        grad_weight[c] = gw;
        grad_bias[c] = sg;
    }
    let training = a.mode == MODE_TRAIN;
    chan[K1 * a.c + c] = weight[c] * invstd;
    chan[K2 * a.c + c] = select(0.0, sg / a.count, training);
    chan[K3 * a.c + c] = select(0.0, invstd * invstd * sgx / a.count, training);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn batchnorm_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= a.n * a.c * a.hw { return; }
    let per_image = a.c * a.hw;
    let c = (i % per_image) / a.hw;
    let t = (i / per_image) * a.hw + i % a.hw;
    let v = normed(x[at(t, c, a.x_off, a.x_bs)], c);
    let o = at(t, c, a.o_off, a.o_bs);
    let y = relu_if(v, a.relu != 0u);
    if a.accumulate != 0u { out[o] += y; } else { out[o] = y; }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn batchnorm_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= a.n * a.c * a.hw { return; }
    let per_image = a.c * a.hw;
    let c = (i % per_image) / a.hw;
    let t = (i / per_image) * a.hw + i % a.hw;
    let xv = x[at(t, c, a.x_off, a.x_bs)];
    let gv = masked_grad(g[at(t, c, a.g_off, a.g_bs)], xv, c);
    let xc = xv - chan_at(MEAN, c);
    let v = chan_at(K1, c) * (gv - chan_at(K2, c) - xc * chan_at(K3, c));
    let o = at(t, c, a.o_off, a.o_bs);
    if a.accumulate != 0u { out[o] += v; } else { out[o] = v; }
}
