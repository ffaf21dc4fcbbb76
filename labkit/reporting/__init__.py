"""From results/ to report.md: select runs, statistics, the lab report's claims, tables, figures, markdown."""
