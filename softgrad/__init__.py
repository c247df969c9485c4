"""softgrad's harness: size grid, inputs, checks, sweep, summary, report and CLI."""

__version__ = "0.1.0"
