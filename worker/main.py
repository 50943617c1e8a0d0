"""Entry point for ``dramatiq worker.main``: logging and the broker from the environment."""

from models.observe.logs import configure_logging
from models.settings import Settings
from worker.broker import build_broker

settings = Settings.from_env()
# in a worker process stderr is dramatiq's pipe to its main process, which prints the lines
configure_logging(level=settings.logging.level, fmt=settings.logging.format)
broker = build_broker(settings)
