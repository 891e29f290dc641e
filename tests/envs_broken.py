"""An env module whose own import fails: a dependency it needs is not installed (#17)."""

import drl_test_dependency_that_is_not_installed  # type: ignore[import-not-found]  # noqa: F401
