"""Search strategies behind the ask/tell contract of mobilenas.search.base.Strategy."""
