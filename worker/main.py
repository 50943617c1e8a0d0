"""Entry point for ``dramatiq worker.main``: the broker from the environment."""

from models.settings import Settings
from worker.broker import build_broker

broker = build_broker(Settings.from_env())
