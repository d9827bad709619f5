// optim.wgsl — optimizer updates with exactly torch.optim's rules, one thread per element of
// one parameter tensor, updated in place.
//
// Contract (Optim args at binding 0): 1: param (read-write), 2: grad, 3: state0, 4: state1.
//   sgd_step (torch.optim.SGD; state0 = momentum buffer):
//     g = grad + weight_decay * param
//     momentum != 0: buf = (step == 1) ? g : momentum * buf + (1 - dampening) * g
//                    g = nesterov ? g + momentum * buf : buf
//     param -= lr * g
//   adam_step (torch.optim.Adam / AdamW; state0 = exp_avg, state1 = exp_avg_sq):
//     AdamW (decoupled = 1): param *= 1 - lr * weight_decay;  Adam: g = grad + weight_decay * param
//     exp_avg += (1 - beta1) * (g - exp_avg)            (torch's lerp)
//     exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
//     param -= (lr / bias_c1) * exp_avg / (sqrt(exp_avg_sq) / bias_c2_sqrt + eps)
//     with bias_c1 = 1 - beta1^step, bias_c2_sqrt = sqrt(1 - beta2^step) from the host.
// No loops.

struct Optim {
    count: u32,
    step: u32,
    nesterov: u32,
    decoupled: u32,
    lr: f32,
    momentum: f32,
    dampening: f32,
    weight_decay: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bias_c1: f32,
    bias_c2_sqrt: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> o: Optim;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> state0: array<f32>;
@group(0) @binding(4) var<storage, read_write> state1: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn sgd_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= o.count { return; }
    let p = param[i];
    var g = grad[i];
    if o.weight_decay != 0.0 { g += o.weight_decay * p; }
    if o.momentum != 0.0 {
        var buf = g;
        if o.step > 1u { buf = o.momentum * state0[i] + (1.0 - o.dampening) * g; }
        state0[i] = buf;
        g = select(buf, g + o.momentum * buf, o.nesterov != 0u);
    }
    param[i] = p - o.lr * g;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn adam_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= o.count { return; }
    var p = param[i];
    var g = grad[i];
    if o.decoupled != 0u {
        p *= 1.0 - o.lr * o.weight_decay;
    } else if o.weight_decay != 0.0 {
        g += o.weight_decay * p;
    }
    let m = state0[i] + (1.0 - o.beta1) * (g - state0[i]);
    let v = o.beta2 * state1[i] + (1.0 - o.beta2) * g * g;
    state0[i] = m;
    state1[i] = v;
    let denom = sqrt(v) / o.bias_c2_sqrt + o.eps;
    param[i] = p - (o.lr / o.bias_c1) * m / denom;
}
