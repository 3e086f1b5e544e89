"""Data formats: every supported shape normalises to the internal form; malformed records name index and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.data.dataset_formats import (
    load_preference_examples,
    load_sft_examples,
    parse_preference_record,
    parse_sft_record,
)
from training.data.records import DataValidationError


def test_alpaca_sharegpt_and_messages_normalise_to_one_form() -> None:
    alpaca = parse_sft_record({"instruction": "Sum", "input": "1 2", "output": "3"}, "f#0")
    sharegpt = parse_sft_record(
        {"conversations": [{"from": "human", "value": "Sum\n\n1 2"}, {"from": "gpt", "value": "3"}]}, "f#1"
    )
    messages = parse_sft_record(
        {"messages": [{"role": "user", "content": "Sum\n\n1 2"}, {"role": "assistant", "content": "3"}]}, "f#2"
    )
    assert alpaca.messages == sharegpt.messages == messages.messages
    assert alpaca.messages[-1] == {"role": "assistant", "content": "3"}


def test_preference_forms() -> None:
    plain = parse_preference_record({"prompt": "Q", "chosen": "good", "rejected": "bad"}, "p#0")
    conv = parse_preference_record(
        {
            "conversations": [{"from": "human", "value": "Q"}],
            "chosen": {"from": "gpt", "value": "good"},
            "rejected": {"from": "gpt", "value": "bad"},
        },
        "p#1",
    )
    listed = parse_preference_record(
        {
            "prompt": [{"role": "user", "content": "Q"}],
            "chosen": [{"role": "assistant", "content": "good"}],
            "rejected": [{"role": "assistant", "content": "bad"}],
        },
        "p#2",
    )
    assert (plain.prompt, plain.chosen, plain.rejected) == (conv.prompt, conv.chosen, conv.rejected)
    assert listed.prompt == plain.prompt and listed.chosen == "good"
    stored = parse_preference_record({"rendered_prompt": "<|im_start|>user\nQ", "chosen": "a", "rejected": "b"}, "s#0")
    assert stored.rendered_prompt == "<|im_start|>user\nQ" and stored.chosen == "a"


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"instruction": "x"}, "output"),
        ({"instruction": "x", "output": 3}, "output"),
        ({"messages": [{"role": "user", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}, "messages[0].role"),
        ({"conversations": [{"from": "human"}, {"from": "gpt", "value": "y"}]}, "conversations[0].value"),
        ({"text": "free text"}, "record"),
    ],
)
def test_malformed_sft_record_names_index_and_field(tmp_path: Path, record: dict, field: str) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"instruction": "ok", "output": "fine"}, record]))
    with pytest.raises(DataValidationError) as info:
        load_sft_examples([path])
    assert f"{path}#1" in info.value.message and field in info.value.message
    assert info.value.field == field


def test_preference_missing_field(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "Q", "chosen": "a", "rejected": "b"}) + "\n" + json.dumps({"prompt": "Q"}))
    with pytest.raises(DataValidationError, match=r"p.jsonl#1: field 'chosen' is missing"):
        load_preference_examples([path])


def test_invalid_json_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": \n')
    with pytest.raises(DataValidationError, match=r"bad.jsonl#1: field 'json'"):
        load_sft_examples([path])


def test_csv_files(tmp_path: Path) -> None:
    sft = tmp_path / "sft.csv"
    sft.write_text('instruction,input,output\nSay hi,,hi\n"Add","1,2",3\n')
    examples = load_sft_examples([sft])
    assert examples[1].messages[0]["content"] == "Add\n\n1,2"
    prefs = tmp_path / "p.csv"
    conv = json.dumps([{"from": "human", "value": "Q"}]).replace('"', '""')
    prefs.write_text(f'conversations,chosen,rejected\n"{conv}",good,bad\n')
    assert load_preference_examples([prefs])[0].prompt == ({"role": "user", "content": "Q"},)


def test_shared_data_files_load(shared_data: Path) -> None:
    alpaca = load_sft_examples([shared_data / "sft-alpaca-999.json"])
    pairs = load_preference_examples([shared_data / "dpo-sharegpt-300.json"])
    assert len(alpaca) == 999 and len(pairs) == 300
    assert all(p.prompt[-1]["role"] == "user" for p in pairs)
    assert sum(len(p.prompt) > 1 for p in pairs) > 0  # multi-turn prompts kept as conversations
