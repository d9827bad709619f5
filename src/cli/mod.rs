//! The `skipgrad` command line: one module per subcommand. Nothing in the library knows it.

pub mod bench;
pub mod check;
pub mod gradflow;
pub mod info;
pub mod memory;
pub mod selftest;
pub mod stress;
pub mod suite;
pub mod train;
pub mod tune;

use skipgrad::{Gpu, Result};

/// Opens the GPU: `--backend` wins over `SKIPGRAD_BACKEND`.
pub fn open_gpu(backend: Option<&str>) -> Result<Gpu> {
    // A bad SKIPGRAD_CONV_KERNELS fails here, before any work, not at the first conv.
    skipgrad::ConvKernels::from_env()?;
    match backend {
        Some(b) => Gpu::with_backend(Some(b)),
        None => Gpu::new(),
    }
}

/// Lines for a table's foot where a forced conv family did not run all of a case: which
/// other families ran its passes (a family takes only the problems it has kernels for, and
/// the selection's one fallback runs the rest), so a figure is not read as the forced
/// family's when it is not. `cases`: each case's name and the kernels it ran.
pub fn fallback_notes<'a>(
    gpu: &Gpu,
    cases: impl IntoIterator<Item = (&'a str, &'a [String])>,
) -> Vec<String> {
    let forced = gpu.conv_kernels();
    if forced == skipgrad::ConvKernels::AUTO {
        return Vec::new();
    }
    let mut notes = Vec::new();
    for (case, kernels) in cases {
        let mut others: Vec<&str> = Vec::new();
        let mut took_some = false;
        for k in kernels {
            match skipgrad::ConvKernels::of_kernel(k) {
                Some(f) if f == forced => took_some = true,
                Some(f) if !others.contains(&f.name()) => others.push(f.name()),
                _ => {}
            }
        }
        if !others.is_empty() {
            let (took, ran) = if took_some {
                ("does not take every pass", "ran the rest")
            } else {
                ("takes none of its passes", "ran them")
            };
            notes.push(format!(
                "{case}: {} {took}; {} {ran} (`skipgrad info`: what each family takes)",
                forced.name(),
                others.join(", ")
            ));
        }
    }
    notes
}

/// The names of the cases, for an error that says which there are.
pub fn case_names<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().collect::<Vec<_>>().join(", ")
}

/// One line naming the adapter, for table headers.
pub fn adapter_line(gpu: &Gpu) -> String {
    let i = gpu.adapter_info();
    format!(
        "{} ({:?}, {}, driver {} {})",
        i.name,
        i.device_type,
        gpu.backend_name(),
        i.driver,
        i.driver_info
    )
}

/// The choices the `Auto` tuner made or took from its cache on `gpu`, as JSON rows
/// (benchmark reports carry them, so that two runs whose figures differ can be compared by
/// the kernels they ran).
pub fn tuned_json(gpu: &Gpu) -> serde_json::Value {
    serde_json::Value::Array(gpu.tuned_conv_choices().iter().map(choice_json).collect())
}

/// One tuner choice (or failed variant) as a JSON row.
pub fn choice_json(c: &skipgrad::ops::conv2d::TunedChoice) -> serde_json::Value {
    serde_json::json!({
        "pass": c.pass,
        "input": c.input,
        "weight": c.weight,
        "stride": c.stride,
        "padding": c.padding,
        "dilation": c.dilation,
        "groups": c.groups,
        "family": c.family.name(),
        "variant": c.variant,
        "ms": c.ms,
        "failure": c.failure,
    })
}

/// The error of failing to write `path` (an output file or its folder).
pub fn write_err(path: &std::path::Path, e: impl std::fmt::Display) -> skipgrad::Error {
    skipgrad::Error::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Formats a byte count with a binary unit.
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A progress bar on stderr; indicatif draws nothing when stderr is not a terminal.
pub fn progress_bar(len: u64, prefix: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.with_prefix(prefix)
}

/// One line of a chart: label, colour, points, and whether each point is also marked.
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Line colour.
    pub color: plotters::style::RGBColor,
    /// (x, y) points in order.
    pub points: Vec<(f64, f64)>,
    /// Mark every point with a dot.
    pub dots: bool,
}

/// Draws `series` as lines on one chart (white background, mesh, legend) into an SVG.
pub fn line_chart(
    path: &std::path::Path,
    caption: &str,
    (x_desc, y_desc): (&str, &str),
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
    series: &[Series],
    legend: plotters::chart::SeriesLabelPosition,
) -> Result<()> {
    use plotters::prelude::*;
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x.clone(), y.clone())?;
        chart
            .configure_mesh()
            .x_label_formatter(&axis_label)
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()?;
        for s in series {
            let c = s.color;
            chart
                .draw_series(LineSeries::new(s.points.clone(), c.stroke_width(2)))?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
            if s.dots {
                chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
            }
        }
        chart
            .configure_series_labels()
            .position(legend)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| write_err(path, e))
}

/// A label of an axis that counts (layers, depths, steps): whole numbers without a
/// fraction (`10`, not `10.0`), and no label at the ticks between them.
pub fn axis_label(v: &f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        String::new()
    }
}

/// The colour of an architecture in every plot.
pub fn arch_color(arch: &str) -> plotters::style::RGBColor {
    use plotters::style::{BLUE, RED};
    match arch {
        "plain" => RED,
        "residual" => BLUE,
        "resnet-bn" => plotters::style::RGBColor(120, 40, 160),
        "densenet-bc" => plotters::style::RGBColor(230, 130, 0),
        _ => plotters::style::RGBColor(0, 140, 60),
    }
}
