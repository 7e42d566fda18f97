"""The clinician's dashboard (pages served by the service itself) and the demo ward."""

from vitaltwin.dashboard.demo import DemoConfig, WardFeed, demo_accounts
from vitaltwin.dashboard.pages import dashboard_router, install

__all__ = ["DemoConfig", "WardFeed", "dashboard_router", "demo_accounts", "install"]
