"""The ui tests drive the dashboard with the pages' fixtures."""

from tests.pages.conftest import app_env, custom_digits_source, dashboard  # noqa: F401
