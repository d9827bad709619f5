//! The oracle's residual and dense blocks, forward and backward, composed of the ops above.

use super::*;

/// One conv layer of a block, on the host: weight, its shape, bias.
pub struct HostConv<'a> {
    /// OIHW weight values.
    pub weight: &'a [f64],
    /// OIHW weight shape.
    pub shape: [usize; 4],
    /// Bias values.
    pub bias: &'a [f64],
}

/// Forward of a residual block: `basic` gives `relu(conv2(relu(conv1(x))) + x)`, else the
/// skip-connection block `relu(conv2(relu(conv1(x)))) + x`. Both convs use `p`.
pub fn residual_block(
    x: &[f64],
    xs: [usize; 4],
    conv1: &HostConv<'_>,
    conv2: &HostConv<'_>,
    p: &Conv2dParams,
    basic: bool,
) -> Result<Vec<f64>> {
    let (a1, s1) = conv2d(x, xs, conv1.weight, conv1.shape, Some(conv1.bias), p)?;
    let (a2, _) = conv2d(
        &relu(&a1),
        s1,
        conv2.weight,
        conv2.shape,
        Some(conv2.bias),
        p,
    )?;
    Ok(if basic {
        relu(&add(&a2, x))
    } else {
        add(&relu(&a2), x)
    })
}

/// Forward of a dense block: `feat_{i+1} = conv_i(relu(concat(feat_0 … feat_i)))` with 3×3,
/// padding-1 convs; returns `concat(feat_0 … feat_L)`.
pub fn dense_block(x: &[f64], xs: [usize; 4], layers: &[HostConv<'_>]) -> Result<Vec<f64>> {
    let p = Conv2dParams::new(1, 1);
    let mut feats = vec![x.to_vec()];
    let mut shapes = vec![xs];
    for l in layers {
        let refs: Vec<&[f64]> = feats.iter().map(|f| f.as_slice()).collect();
        let cat = concat(&refs, &shapes);
        let cs = [xs[0], shapes.iter().map(|s| s[1]).sum(), xs[2], xs[3]];
        let (f, fs) = conv2d(&relu(&cat), cs, l.weight, l.shape, Some(l.bias), &p)?;
        feats.push(f);
        shapes.push(fs);
    }
    let refs: Vec<&[f64]> = feats.iter().map(|f| f.as_slice()).collect();
    Ok(concat(&refs, &shapes))
}

/// Gradients of a block: input gradient and parameter gradients in `state_dict` order
/// (weight, bias per conv).
pub struct BlockGradsHost {
    /// Gradient of the input.
    pub grad_x: Vec<f64>,
    /// Per conv: (weight gradient, bias gradient).
    pub params: Vec<(Vec<f64>, Vec<f64>)>,
}

/// Backward of [`residual_block`] for the output gradient `grad_y`.
pub fn residual_block_backward(
    x: &[f64],
    xs: [usize; 4],
    conv1: &HostConv<'_>,
    conv2: &HostConv<'_>,
    p: &Conv2dParams,
    basic: bool,
    grad_y: &[f64],
) -> Result<BlockGradsHost> {
    let (a1, s1) = conv2d(x, xs, conv1.weight, conv1.shape, Some(conv1.bias), p)?;
    let h1 = relu(&a1);
    let (a2, s2) = conv2d(&h1, s1, conv2.weight, conv2.shape, Some(conv2.bias), p)?;
    let (g_a2, skip) = if basic {
        let g_s = relu_backward(&add(&a2, x), grad_y);
        (g_s.clone(), g_s)
    } else {
        (relu_backward(&a2, grad_y), grad_y.to_vec())
    };
    let gw2 = conv2d_backward_weight(&h1, s1, &g_a2, conv2.shape, p)?;
    let gb2 = conv2d_backward_bias(&g_a2, s2);
    let g_a1 = relu_backward(
        &a1,
        &conv2d_backward_input(&g_a2, s1, conv2.weight, conv2.shape, p)?,
    );
    let gw1 = conv2d_backward_weight(x, xs, &g_a1, conv1.shape, p)?;
    let gb1 = conv2d_backward_bias(&g_a1, s1);
    let grad_x = add(
        &skip,
        &conv2d_backward_input(&g_a1, xs, conv1.weight, conv1.shape, p)?,
    );
    Ok(BlockGradsHost {
        grad_x,
        params: vec![(gw1, gb1), (gw2, gb2)],
    })
}

/// Backward of [`dense_block`] for the output gradient `grad_y`.
pub fn dense_block_backward(
    x: &[f64],
    xs: [usize; 4],
    layers: &[HostConv<'_>],
    grad_y: &[f64],
) -> Result<BlockGradsHost> {
    let p = Conv2dParams::new(1, 1);
    let mut feats = vec![x.to_vec()];
    let mut shapes = vec![xs];
    let mut cats = Vec::new();
    for l in layers {
        let refs: Vec<&[f64]> = feats.iter().map(|f| f.as_slice()).collect();
        let cs = [xs[0], shapes.iter().map(|s| s[1]).sum(), xs[2], xs[3]];
        let cat = concat(&refs, &shapes);
        let (f, fs) = conv2d(&relu(&cat), cs, l.weight, l.shape, Some(l.bias), &p)?;
        cats.push((cat, cs));
        feats.push(f);
        shapes.push(fs);
    }
    let mut g_feats = concat_backward(grad_y, &shapes);
    let mut params = Vec::new();
    for (i, l) in layers.iter().enumerate().rev() {
        let (cat, cs) = &cats[i];
        let g_f = g_feats[i + 1].clone();
        let gw = conv2d_backward_weight(&relu(cat), *cs, &g_f, l.shape, &p)?;
        let gb = conv2d_backward_bias(&g_f, shapes[i + 1]);
        let g_cat = relu_backward(
            cat,
            &conv2d_backward_input(&g_f, *cs, l.weight, l.shape, &p)?,
        );
        for (j, part) in concat_backward(&g_cat, &shapes[..=i])
            .into_iter()
            .enumerate()
        {
            for (a, b) in g_feats[j].iter_mut().zip(part) {
                *a += b;
            }
        }
        params.push((gw, gb));
    }
    params.reverse();
    Ok(BlockGradsHost {
        grad_x: g_feats.swap_remove(0),
        params,
    })
}
