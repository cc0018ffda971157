"""norm-wise aggregation rules (each helper appends its import and its names to __all__)."""

__all__: list[str] = []
