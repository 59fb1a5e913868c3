"""Reading a user's CSV (a submission, coordinates, truth) with one-line errors instead of pandas' tracebacks."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from spinedata.errors import DataLayoutError

if TYPE_CHECKING:
    import pandas as pd


def read_user_csv(path: str | os.PathLike, what: str, dtype: dict | None = None) -> pd.DataFrame:
    """``pd.read_csv(path, dtype=dtype)``; ``FileNotFoundError`` for a missing file and ``DataLayoutError``
    (naming ``what`` and the file) for an empty, malformed or undecodable one, or one without rows."""
    import pandas as pd

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path} is not a file")
    try:
        frame = pd.read_csv(path, dtype=dtype)
    except pd.errors.EmptyDataError:
        raise DataLayoutError(f"{what} {path} is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        detail = " ".join(str(error).split())[:200]
        raise DataLayoutError(f"{what} {path} is not a readable CSV ({detail})") from None
    if frame.empty:
        raise DataLayoutError(f"{what} {path} has a header but no rows")
    return frame
