"""The offline comparison report (``prunelab report``): :mod:`.data` loads and aggregates run directories,
:mod:`.figures` draws, :mod:`.render` builds the sections and writes HTML, Markdown and CSV."""
from .render import main, write_report

__all__ = ["main", "write_report"]
