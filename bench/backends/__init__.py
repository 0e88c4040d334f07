"""Everything that knows a particular engine: command lines, output parsers, the CPU runner."""
