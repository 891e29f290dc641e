"""Imported through `env.imports` to make a run's start-up slow on purpose: sleeps for
DRL_TEST_SLOW_IMPORT_S seconds (0 unless set), so a test can signal a run before training."""

import os
import time

time.sleep(float(os.environ.get("DRL_TEST_SLOW_IMPORT_S", "0")))
