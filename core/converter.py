"""How every payload crosses the Temporal boundary: pydantic models as JSON,
for clients, workers and the Replayer alike (sdk-python's
`temporalio.contrib.pydantic`)."""

from __future__ import annotations

from temporalio.contrib.pydantic import pydantic_data_converter

DATA_CONVERTER = pydantic_data_converter
