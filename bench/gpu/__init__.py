"""GPU facts: datasheet limits, what the driver reports, and telemetry sampled during a point."""
