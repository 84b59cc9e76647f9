"""webui/formrender.py on its own (in a request context, per language): messages translated,
values formatted, data described, HTML form fields parsed by the schema's types."""
from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from webui import create_app, formrender as fr


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return create_app({"INSTANCE_PATH": str(tmp_path_factory.mktemp("fr")), "SECRET_KEY": "x", "TESTING": True,
                       "SALESFLOW_DATABASE_URL": "sqlite://"}, engine=object())


@pytest.fixture(params=["en", "zh"])
def lang(app, request):
    from flask import session
    with app.test_request_context("/"):
        session["lang"] = "en" if request.param == "en" else "zh-CN"
        yield request.param


def test_messages_in_the_users_language(lang):
    assert fr.lang() == lang
    assert fr.translate_message("unknown field") != "" and isinstance(fr.translate_message(3), str)
    assert fr.translate_message("something the engine never says") == "something the engine never says"
    typed = fr.translate_message("must be of type integer")
    assert typed == ("must be a whole number" if lang == "en" else typed) and "integer" not in typed
    returned = fr.translate_message("this request was already returned 20 times, the most allowed")
    assert "20" in returned
    zh = fr.form_messages({"properties": {"m": {"x-error": "at least 30", "x-error-zh": "至少30分钟"}},
                      "items": [{"x-error": "e", "x-error-zh": "错"}]})
    assert zh == {"at least 30": "至少30分钟", "e": "错"}
    assert fr.translate_message("at least 30", zh) == ("至少30分钟" if lang == "zh" else "at least 30")
    assert fr.translate_error_dict({"a": "at least 30"}) == {"a": "at least 30"}
    assert fr.translate_error_dict(None) == {}


def test_times_are_shown_in_company_time(lang):
    assert fr.localtime("2026-11-10T02:30:00+00:00") == "2026-11-10 10:30"
    assert fr.localtime("2026-11-10T10:30") == "2026-11-10 10:30"  # no zone: company time already
    assert fr.localtime("not a time") == "" and fr.localtime(None) == ""


def test_values_are_formatted(lang):
    assert fr.format_value("x", None) == "—" and fr.format_value("x", "") == "—"
    assert fr.format_value("x", True) in ("Yes", "是") and fr.format_value("x", False) in ("No", "否")
    assert fr.format_value("amount", 1200000.0) == "¥1,200,000.00"  # money: yuan with two decimals
    assert fr.format_value("amount", 1234.5) == "¥1,234.50"
    prop = {"x-enum-titles": {"approve": {"en": "Approve", "zh": "同意"}}}
    assert fr.format_value("decision", "approve", prop) == ("Approve" if lang == "en" else "同意")
    assert fr.format_value("tags", ["a", "b"]) == "a, b" and fr.format_value("tags", []) == "—"
    assert fr.format_value("at", "2026-11-10T02:30:00+00:00") == "2026-11-10 10:30"
    assert fr.format_value("submitter", "alice", None, {"alice": "Alice 艾丽斯"}) == "Alice 艾丽斯"


def test_data_is_described_form_fields_first_and_nested_as_sub_lists(lang):
    fields = {"amount": {"title": "Amount", "x-title-zh": "金额"},
              "review": {"title": "Review", "properties": {"comment": {"title": "Comment", "x-title-zh": "意见"}}}}
    items = fr.describe({"note_text": "n", "review": {"comment": "ok"}, "amount": 5}, fields, hide=())
    assert [i.key for i in items] == ["review", "amount", "note_text"]
    assert items[2].label == "Note text" and items[1].label == ("Amount" if lang == "en" else "金额")
    assert fr.flatten(items)[0] == (items[0].label, f"{'Comment' if lang == 'en' else '意见'}: ok")
    assert fr.describe({"a": 1, "b": 2}, None, hide=("a",))[0].key == "b"
    assert fr.describe("not a dict") == []


def test_html_forms_are_parsed_by_the_schemas_types(lang):
    schema = {"type": "object", "required": ["group"], "properties": {
        "n": {"type": "integer"}, "x": {"type": "number"}, "flag": {"type": "boolean"},
        "text": {"type": "string"}, "notes": {"type": "string", "format": "textarea"},
        "group": {"type": "object", "properties": {"a": {"type": "number"}}},
    }}
    form = MultiDict({"n": "3.0", "x": "2", "flag": "on", "text": "  t  ", "group.a": "1.5"})
    assert fr.parse_form(schema, form) == {"n": 3, "x": 2, "flag": True, "text": "t", "group": {"a": 1.5}}
    odd = fr.parse_form(schema, MultiDict({"n": "3.5", "x": "inf", "text": "   "}))
    assert odd == {"n": "3.5", "x": "inf", "flag": False, "group": {}}  # left for the engine to refuse
    assert fr.raw_values(MultiDict([("csrf_token", "t"), ("a", "1"), ("b", "1"), ("b", "2")])) == {"a": "1", "b": ["1", "2"]}
    assert fr.general_errors(schema, {"_form": "unknown field", "n": "bad", "ghost": "unknown field"}) == [
        fr.translate_message("unknown field"), f"ghost: {fr.translate_message('unknown field')}"]


# a process's words, as the engine hands them out with an instance ("vocabulary", from workflows/vocabulary.json)
WORDS = {
    "data": {
        "days": {"title": "Days away", "x-title-zh": "出差天数"},
        "left": {"title": "Left (CNY)", "x-title-zh": "剩余（元）", "x-format": "money"},
        "total": {"title": "Total (CNY)", "x-title-zh": "合计（元）"},
        "why": {"title": "Why", "x-title-zh": "原因", "x-enum-titles": {
            "far": {"en": "it is far", "zh": "路程远"}, "long": {"en": "it is long", "zh": "时间长"}},
            "x-also": [{"value": "long", "when": {"special": True, "days": 9}}]},
        "outcome": {"x-enum-titles": {"settled": {"en": "Settled", "zh": "已定"}}},
    },
    "cards": [{"id": "trip-card", "when": ["days"], "rows": [
        {"key": "days", "title": "Days", "x-title-zh": "天数", "main": True},
        {"key": "rate", "title": "Rate", "x-title-zh": "比例", "format": "percent"},
        {"key": "avg", "title": "Average", "x-title-zh": "平均", "digits": 1},
        {"key": "visa", "title": "Visa", "x-title-zh": "签证",
         "x-enum-titles": {"true": {"en": "Needed", "zh": "需要"}, "false": {"en": "Not needed", "zh": "不需要"}}},
        {"key": "before", "title": "Before", "x-title-zh": "之前", "optional": True, "unless": "days"}]}],
    "messages": {"at least one night": "至少住一晚"},
}


def test_data_no_form_declares_is_labelled_by_the_process_vocabulary(lang):
    en = lang == "en"
    data = {"why": "far", "special": True, "days": 9, "left": 12.5, "total": 5000, "outcome": "settled", "other_key": 1}
    items = {i.key: i for i in fr.describe(data, {}, vocabulary=WORDS)}
    assert items["days"].label == ("Days away" if en else "出差天数") and items["days"].value == "9"
    assert items["why"].value == ("it is far; it is long" if en else "路程远；时间长")  # x-also: both reasons
    assert items["left"].value == "¥12.50" and items["total"].value == "5,000"  # money only when declared
    assert items["outcome"].label == ("Outcome" if en else "结果") and items["other_key"].label == "Other key"
    assert fr.describe({"why": "far", "days": 2}, {}, vocabulary=WORDS)[0].value == ("it is far" if en else "路程远")
    assert fr.describe({"days": 2}, {"days": {"title": "Form days", "x-title-zh": "表单天数"}},
                       vocabulary=WORDS)[0].label == ("Form days" if en else "表单天数")  # a form's title wins
    nested = fr.describe({"review": {"days": 3}}, {}, vocabulary=WORDS)[0].children[0]
    assert nested.label == ("Days away" if en else "出差天数")
    assert fr.describe({"days": 2})[0].label == "Days"  # no vocabulary: the key, readable
    assert fr.outcome_label("settled", WORDS) == ("Settled" if en else "已定")
    assert fr.outcome_label("approved", WORDS) == ("Approved" if en else "已通过")
    assert fr.outcome_label("won") == "won"  # a process's outcome without its words: as it is


def test_result_cards_are_what_the_process_declares(lang):
    en = lang == "en"
    assert fr.result_cards({"rate": 1}, WORDS) == [] and fr.result_cards({"days": 3}, None) == []
    [card] = fr.result_cards({"days": 3, "rate": 0.8, "avg": 75.25, "visa": None, "before": 3}, WORDS)
    assert card["id"] == "trip-card" and card["keys"] == ["days", "rate", "avg", "visa", "before"]
    rows = {r["key"]: r for r in card["rows"]}
    assert set(rows) == {"days", "rate", "avg", "visa"}  # before: the same as days
    assert rows["days"]["main"] and rows["days"]["label"] == ("Days" if en else "天数") and rows["days"]["value"] == "3"
    assert rows["rate"]["value"] == "80%" and rows["avg"]["value"] == "75.3" and rows["avg"]["exact"] == "75.25"
    assert rows["visa"]["value"] == ("Not needed" if en else "不需要")
    [card] = fr.result_cards({"days": 3, "visa": True, "before": 5}, WORDS)
    rows = {r["key"]: r for r in card["rows"]}
    assert rows["visa"]["value"] == ("Needed" if en else "需要") and rows["before"]["value"] == "5"
    assert rows["rate"]["value"] == "—" and rows["avg"]["value"] == "—"


def test_a_forms_messages_in_chinese_from_the_form_else_from_the_vocabulary(lang):
    assert fr.form_zh({"properties": {"n": {"x-error": "e", "x-error-zh": "错"}}}, WORDS) == \
        {"at least one night": "至少住一晚", "e": "错"}
    zh = fr.form_zh({"properties": {"n": {"x-error": "at least one night"}}}, WORDS)  # an older form: no x-error-zh
    assert fr.translate_message("at least one night", zh) == ("at least one night" if lang == "en" else "至少住一晚")
    assert fr.general_errors({}, {"_form": "at least one night"}, zh) == [
        "at least one night" if lang == "en" else "至少住一晚"]
