//! `skipgrad memory`'s outputs: the table for people, CSV, and the SVG plot.

use std::path::Path;

use plotters::prelude::*;
use skipgrad::Gpu;

use super::super::{adapter_line, fmt_bytes};
use super::{Row, Sweep};

pub(super) fn print_table(gpu: &Gpu, a: &Sweep, rows: &[Row]) {
    println!("adapter: {}", adapter_line(gpu));
    println!(
        "{}: growth {}, {} input channels, {}x{} pixels, batch {}; peak bytes of one forward+backward\n\
         (meas: activations + gradients + parameters, what the formula counts; +scratch: the kernels' working memory on top;\n\
         driver: what the driver allocator holds for the engine during backward, above what it held before the block)",
        a.title(),
        a.growth,
        a.channels,
        a.size,
        a.size,
        a.batch
    );
    println!(
        "{:>3} | {:>11} {:>11} {:>7} {:>11} {:>11} {:>11} {:>9} | {:>11} {:>11} {:>7} {:>11} {:>11} {:>11} {:>9} | {:>6}",
        "L",
        "naive meas",
        "analytic",
        "m/a",
        "activations",
        "+scratch",
        "driver",
        "ms",
        "shared meas",
        "analytic",
        "m/a",
        "activations",
        "+scratch",
        "driver",
        "ms",
        "n/s"
    );
    for pair in rows.chunks(2) {
        let (nv, sh) = (&pair[0], &pair[1]);
        let ratio = |r: &Row| r.measured_peak_bytes as f64 / r.analytic_peak_bytes as f64;
        let driver = |r: &Row| r.driver_engine_bytes.map_or("-".into(), fmt_bytes);
        println!(
            "{:>3} | {:>11} {:>11} {:>7.3} {:>11} {:>11} {:>11} {:>9.2} | {:>11} {:>11} {:>7.3} {:>11} {:>11} {:>11} {:>9.2} | {:>6.2}",
            nv.layers,
            fmt_bytes(nv.measured_peak_bytes),
            fmt_bytes(nv.analytic_peak_bytes),
            ratio(nv),
            fmt_bytes(nv.measured_activation_bytes),
            fmt_bytes(nv.measured_peak_with_scratch_bytes - nv.measured_peak_bytes),
            driver(nv),
            nv.fwd_bwd_ms,
            fmt_bytes(sh.measured_peak_bytes),
            fmt_bytes(sh.analytic_peak_bytes),
            ratio(sh),
            fmt_bytes(sh.measured_activation_bytes),
            fmt_bytes(sh.measured_peak_with_scratch_bytes - sh.measured_peak_bytes),
            driver(sh),
            sh.fwd_bwd_ms,
            nv.measured_peak_bytes as f64 / sh.measured_peak_bytes as f64,
        );
    }
    if let Some(d) = rows.last().and_then(|r| r.driver_allocated_bytes) {
        println!(
            "driver allocator (last row, during backward): {} in all, wgpu's own included",
            fmt_bytes(d)
        );
    } else {
        println!("driver allocator: not reported by this backend");
    }
    if let Some(r) = rows.last() {
        let held = r
            .driver_engine_bytes
            .unwrap_or(r.measured_peak_with_scratch_bytes);
        println!(
            "deepest {} block: the device holds {} for it, {:.3}x the analytic minimum ({}); scratch budget {}",
            r.strategy,
            fmt_bytes(held),
            held as f64 / r.analytic_peak_bytes as f64,
            fmt_bytes(r.analytic_peak_bytes),
            fmt_bytes(gpu.scratch_budget())
        );
        if let Some(block_scratch) = r.analytic_block_scratch_bytes {
            let minimum = r.analytic_peak_bytes + block_scratch;
            println!(
                "  with the block's own scratch by its formula ({}): {:.3}x of {}; the rest is the kernels' staging",
                fmt_bytes(block_scratch),
                held as f64 / minimum as f64,
                fmt_bytes(minimum)
            );
        }
    }
}

pub(super) fn write_csv(path: &Path, rows: &[Row]) -> skipgrad::Result<()> {
    let mut s = String::from(
        "block,strategy,layers,growth,channels,size,batch,measured_peak_bytes,analytic_peak_bytes,measured_activation_bytes,measured_gradient_bytes,measured_parameter_bytes,measured_uniform_bytes,measured_scratch_bytes,measured_peak_with_scratch_bytes,analytic_block_scratch_bytes,driver_allocated_bytes,driver_engine_bytes,fwd_bwd_ms\n",
    );
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.3}\n",
            r.block,
            r.strategy,
            r.layers,
            r.growth,
            r.channels,
            r.size,
            r.batch,
            r.measured_peak_bytes,
            r.analytic_peak_bytes,
            r.measured_activation_bytes,
            r.measured_gradient_bytes,
            r.measured_parameter_bytes,
            r.measured_uniform_bytes,
            r.measured_scratch_bytes,
            r.measured_peak_with_scratch_bytes,
            r.analytic_block_scratch_bytes
                .map(|d| d.to_string())
                .unwrap_or_default(),
            r.driver_allocated_bytes
                .map(|d| d.to_string())
                .unwrap_or_default(),
            r.driver_engine_bytes
                .map(|d| d.to_string())
                .unwrap_or_default(),
            r.fwd_bwd_ms
        ));
    }
    std::fs::write(path, s).map_err(|e| super::super::write_err(path, e))
}

pub(super) fn write_svg(path: &Path, rows: &[Row], a: &Sweep) -> skipgrad::Result<()> {
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let ymax = rows
            .iter()
            .map(|r| {
                let driver = r.driver_engine_bytes.unwrap_or(0);
                mib(r.measured_peak_bytes.max(r.analytic_peak_bytes).max(driver))
            })
            .fold(0.0, f64::max)
            * 1.05;
        let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{} peak memory vs depth (k={}, C0={}, {}x{}, N={})",
                    a.title(),
                    a.growth,
                    a.channels,
                    a.size,
                    a.size,
                    a.batch
                ),
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..(a.max_layers() as f64 + 1.0), 0f64..ymax.max(1e-3))?;
        chart
            .configure_mesh()
            .x_label_formatter(&super::super::axis_label)
            .x_desc("layers L")
            .y_desc("peak MiB (forward + backward)")
            .draw()?;
        for (strategy, color) in [("naive", RED), ("shared", BLUE)] {
            let pts = |f: &dyn Fn(&Row) -> u64| -> Vec<(f64, f64)> {
                rows.iter()
                    .filter(|r| r.strategy == strategy)
                    .map(|r| (r.layers as f64, mib(f(r))))
                    .collect()
            };
            let measured = pts(&|r| r.measured_peak_bytes);
            let analytic = pts(&|r| r.analytic_peak_bytes);
            let driver = pts(&|r| r.driver_engine_bytes.unwrap_or(0));
            if rows.iter().any(|r| r.driver_engine_bytes.is_some()) {
                // What the device holds for the block: data, kernel scratch and arguments.
                let dashed = color.mix(0.8).stroke_width(2);
                chart
                    .draw_series(DashedLineSeries::new(driver, 6, 4, dashed))?
                    .label(format!("{strategy}: driver (everything the device holds)"))
                    .legend(move |(x, y)| {
                        // Dashed in the legend too: two dashes of the line's style.
                        EmptyElement::at((x, y))
                            + PathElement::new(vec![(0, 0), (8, 0)], dashed)
                            + PathElement::new(vec![(13, 0), (20, 0)], dashed)
                    });
            }
            chart
                .draw_series(LineSeries::new(analytic, color.mix(0.4).stroke_width(6)))?
                .label(format!("{strategy}: analytic"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.mix(0.4).stroke_width(6))
                });
            chart
                .draw_series(measured.iter().map(|&p| Circle::new(p, 3, color.filled())))?
                .label(format!("{strategy}: measured"))
                .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| super::super::write_err(path, e))
}
