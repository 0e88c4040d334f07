"""Pure functions over records: tables, statistics, figures, report sections, published
references."""
