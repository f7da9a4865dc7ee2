"""Sequence flags of stateful models: what goes on the wire, and what is refused before sending."""

from __future__ import annotations

import json

import numpy as np
import pytest

from packager.client.core import Prepared, SequenceFlags
from packager.client.errors import error_for_reply
from packager.client.grpcwire import GrpcCodec
from packager.client.httpwire import HttpCodec
from packager.client.sequence import new_sequence_id
from packager.errors import InvalidInput, SequenceNotStarted

X = [Prepared("x", "FP32", (1, 2), np.zeros((1, 2), np.float32))]


def test_flags_travel_as_tritons_request_parameters_on_http_and_grpc() -> None:
    flags = SequenceFlags.of(42, start=True, end=False)
    assert flags is not None
    doc = json.loads(HttpCodec().infer("m", "", X, parameters=flags.parameters()).body[0])
    assert doc["parameters"]["sequence_id"] == 42
    assert doc["parameters"]["sequence_start"] is True
    assert "sequence_end" not in doc["parameters"]
    req = GrpcCodec().infer("m", "", X, parameters=SequenceFlags("utt-7", end=True).parameters())
    params = req.request.parameters
    assert params["sequence_id"].string_param == "utt-7"
    assert params["sequence_end"].bool_param is True


def test_bad_sequence_ids_and_flags_without_an_id_are_refused() -> None:
    assert SequenceFlags.of(0, False, False) is None  # no sequence: an ordinary request
    with pytest.raises(InvalidInput, match="need a sequence_id"):
        SequenceFlags.of(0, True, False)
    with pytest.raises(InvalidInput, match="positive integer"):
        SequenceFlags.of(1.5, False, False)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=r"in 1\.\.2\^64"):
        SequenceFlags.of(-3, False, False)


def test_the_servers_start_flag_refusal_is_a_typed_error() -> None:
    msg = (
        "inference request for sequence 7 to model 'vad' must specify the START flag on the "
        "first request of the sequence"
    )
    err = error_for_reply(400, msg, "infer 'vad'")
    assert isinstance(err, SequenceNotStarted) and isinstance(err, InvalidInput)
    assert "sequence_start=True" in str(err)


def test_new_sequence_ids_are_distinct_positive_63_bit_integers() -> None:
    ids = {new_sequence_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(0 < i < 2**63 for i in ids)
