"""
Helpers for table-driven tests: trial does not report C{subTest} labels,
so a failure must say itself which row of the table failed.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.trial.unittest import SynchronousTestCase

E = TypeVar("E", bound=BaseException)


def raises_for(case: SynchronousTestCase, row: object, exception: type[E],
               f: Callable[..., Any], *args: Any, **kwargs: Any) -> E:
    """
    Like C{case.assertRaises(exception, f, *args, **kwargs)}, but a failure
    names C{row}.

    @return: the exception raised.
    """
    try:
        result = f(*args, **kwargs)
    except exception as e:
        return e
    except BaseException as e:
        case.fail(f"row {row!r}: {exception.__name__} expected, got {e!r}")
    case.fail(f"row {row!r}: {exception.__name__} not raised ({result!r} returned)")
