//! Prints `docs/metrics.md` from the metric catalog:
//! `cargo run --example metrics-doc > docs/metrics.md`.

fn main() {
    print!("{}", fastly_exporter::catalog::docs::markdown());
}
