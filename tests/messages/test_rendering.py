"""Checking, compiling and rendering templates: Liquid, MJML, CSS, text parts, filters."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regulars.messages.models import MessageChannel
from regulars.messages.rendering import (
    CompiledTemplate,
    RenderContext,
    RenderFailed,
    TemplateInvalid,
    TemplateProblem,
    check,
    compile_source,
    open_pixel,
    pick_locale,
    render,
    rewrite_links,
)

EMAIL = MessageChannel.EMAIL
SMS = MessageChannel.SMS

CUSTOMER = {"first_name": "Ann", "id": "c1", "vip": True}


def sms(body: str) -> CompiledTemplate:
    return compile_source(SMS, {"body": body})


def body_of(
    compiled: CompiledTemplate,
    variables: dict[str, object] | None = None,
    *,
    strict: bool = True,
    locale: str = "en",
    timezone: str = "UTC",
) -> str:
    context = RenderContext(variables or {}, locale=locale, timezone=timezone)
    content = render(compiled, context, strict=strict)
    body = content["body"]
    assert isinstance(body, str)
    return body


def failure(compiled: CompiledTemplate, variables: dict[str, object] | None = None) -> str:
    with pytest.raises(RenderFailed) as failed:
        body_of(compiled, variables)
    return failed.value.reason


def email(
    body: str, variables: dict[str, object] | None = None, *, body_format: str = "mjml"
) -> dict[str, object]:
    defaults = {"customer": CUSTOMER, "links": {"shop": "https://shop.example/s"}}
    context = RenderContext(defaults | (variables or {}))
    source = {"subject": "Hello {{ customer.first_name }}", "body": body, "format": body_format}
    return render(compile_source(EMAIL, source), context, strict=True)


def mjml(inside_column: str, *, head: str = "", outside: str = "") -> str:
    return (
        f"<mjml><mj-head>{head}</mj-head><mj-body>{outside}"
        f"<mj-section><mj-column>{inside_column}</mj-column></mj-section></mj-body></mjml>"
    )


# --- Strict and lenient -----------------------------------------------------------------


def test_strict_rendering_names_the_missing_variable_its_field_and_line() -> None:
    source = {"subject": "Hi {{ customer.first_name }}", "body": "<p>x", "format": "html"}
    compiled = compile_source(EMAIL, source)
    context = RenderContext({"customer": {"id": "c1"}})
    with pytest.raises(RenderFailed) as failed:
        render(compiled, context, strict=True)
    assert failed.value.reason == "customer.first_name is not defined (subject, line 1)"


@pytest.mark.parametrize(
    "text", ["Spring is here", "{ braces } and 100% off", "{ {not liquid} }", "a\n\n b "]
)
def test_text_without_liquid_renders_as_written(text: str) -> None:
    compiled = sms(text)
    assert compiled.fields["body"].constant == text
    assert body_of(compiled, {}) == text


def test_text_with_liquid_is_never_taken_as_written() -> None:
    compiled = sms("{% if customer %}Hi{% endif %} {{- ' there' }}")
    assert compiled.fields["body"].constant is None
    assert body_of(compiled, {"customer": {"id": "c1"}}) == "Hi there"
    assert body_of(compiled, {}) == " there"


def test_a_missing_root_variable_is_named_without_quotes() -> None:
    assert failure(sms("Hi\nthere {{ nobody }}")) == "nobody is not defined (body, line 2)"


def test_lenient_rendering_prints_nothing_for_a_missing_variable() -> None:
    compiled = sms("Hi {{ customer.first_name }}!")
    assert body_of(compiled, {"customer": {}}, strict=False) == "Hi !"
    assert body_of(compiled, {}, strict=False) == "Hi !"


def test_default_replaces_a_missing_value_in_strict_mode() -> None:
    compiled = sms('Hi {{ customer.first_name | default: "there" }}')
    assert body_of(compiled, {"customer": {}}) == "Hi there"
    assert body_of(compiled, {"customer": {"first_name": "Ann"}}) == "Hi Ann"


def test_if_on_a_missing_value_takes_the_else_branch_in_strict_mode() -> None:
    compiled = sms("{% if customer.vip %}Gold{% else %}Welcome{% endif %}")
    assert body_of(compiled, {"customer": {}}) == "Welcome"
    assert body_of(compiled, {"customer": {"vip": True}}) == "Gold"


def test_a_missing_variable_in_an_email_body_is_placed_on_the_authors_line() -> None:
    body = "<html><body>\n<p>Hi {{ customer.first_name }}</p>\n<p>Order {{ order.id }}</p>"
    compiled = compile_source(EMAIL, {"subject": "s", "body": body, "format": "html"})
    with pytest.raises(RenderFailed) as failed:
        render(compiled, RenderContext({"customer": CUSTOMER, "order": {}}), strict=True)
    assert failed.value.reason == "order.id is not defined (body, line 3)"


# --- Checking -----------------------------------------------------------------------------


def test_a_syntax_error_is_reported_with_its_field_line_and_column() -> None:
    problems = check(SMS, {"body": "Hello\n  {{ customer | }}"})
    assert len(problems) == 1
    assert (problems[0].field, problems[0].line, problems[0].column) == ("body", 2, 6)
    assert "expected" in problems[0].message


def test_an_unknown_tag_points_at_its_name() -> None:
    [problem] = check(SMS, {"body": "Hi\n\n{% bogus %}"})
    assert problem == TemplateProblem("body", "unexpected tag 'bogus'", 3, 4)


def test_an_unclosed_block_points_at_the_end_of_the_text() -> None:
    [problem] = check(SMS, {"body": "{% if a %}\nyes"})
    assert (problem.line, problem.column) == (2, 4)
    assert "endif" in problem.message


def test_an_unknown_filter_is_a_problem_at_check_time() -> None:
    [problem] = check(SMS, {"body": "Hi\n{% if a %}{{ 'a' | shout }}{% endif %}"})
    assert problem == TemplateProblem("body", "unknown filter 'shout'", 2, 20)


def test_fields_are_validated_against_the_channel_model() -> None:
    problems = check(EMAIL, {"subjet": "Hi", "body": "<p>x</p>"})
    assert {problem.field for problem in problems} == {"subject", "subjet"}
    assert all(problem.line is None for problem in problems)


def test_every_liquid_field_is_parsed_including_list_items() -> None:
    source = {
        "title": "ok",
        "actions": [{"action": "a", "title": "fine"}, {"action": "b", "title": "{{ x | }}"}],
    }
    [problem] = check(MessageChannel.PUSH, source)
    assert problem.field == "actions.1.title"


def test_include_and_render_tags_are_refused() -> None:
    assert check(SMS, {"body": "{% include 'secrets' %}"})
    assert check(SMS, {"body": "{% render 'secrets' %}"})


def test_a_valid_source_has_no_problems() -> None:
    assert check(SMS, {"body": "Hi {{ customer.first_name | default: 'there' }}"}) == []


def test_compile_source_refuses_an_invalid_source_with_its_problems() -> None:
    with pytest.raises(TemplateInvalid) as invalid:
        compile_source(SMS, {"body": "{% if %}"})
    assert invalid.value.problems[0].field == "body"


def test_an_email_body_syntax_error_is_on_the_authors_line() -> None:
    body = mjml("<mj-text>\nHi\n{{ customer.first_name | }}</mj-text>")
    [problem] = check(EMAIL, {"subject": "s", "body": body})
    assert (problem.field, problem.line) == ("body", 3)


def test_mjml_that_does_not_compile_is_a_problem() -> None:
    [problem] = check(EMAIL, {"subject": "s", "body": "<mjml><mj-body><mj-section>"})
    assert problem.field == "body"
    assert problem.message.startswith("MJML: ")


def test_an_mjml_error_position_is_mapped_back_past_liquid_tags() -> None:
    body = "<mjml><mj-head>{% if a %}<mj-title>x</mj-title>{% endif %}</mj-head></mjml>"
    [problem] = check(EMAIL, {"subject": "s", "body": body})
    assert problem.message.startswith("MJML: ")
    assert (problem.line, problem.column) == (1, 16)  # the {% if %} MJML does not accept


def test_liquid_that_mjml_drops_is_a_problem_naming_the_tag() -> None:
    body = mjml('<mj-image src="x.png" {{ extra }} />')
    [problem] = check(EMAIL, {"subject": "s", "body": body})
    assert problem.message.startswith("{{ extra }} is dropped by MJML")
    assert problem.column == body.index("{{ extra }}") + 1


def test_mj_include_is_refused() -> None:
    [problem] = check(EMAIL, {"subject": "s", "body": mjml('<mj-include path="/etc/hosts" />')})
    assert problem.message.startswith("MJML: ")


# --- Email: MJML, CSS, text part, preheader --------------------------------------------------


def test_mjml_keeps_liquid_in_text_and_in_href_attributes() -> None:
    body = mjml(
        '<mj-text>Hi {{ customer.first_name }} <a href="{{ links.shop }}?c={{ customer.id }}">'
        "Shop</a></mj-text>"
        '<mj-button href="{{ links.shop }}/new">New</mj-button>'
    )
    html = str(email(body)["html"])
    assert "Hi Ann" in html
    assert 'href="https://shop.example/s?c=c1"' in html
    assert 'href="https://shop.example/s/new"' in html
    assert "{{" not in html


def test_an_if_with_a_less_than_around_sections_survives_mjml() -> None:
    section = "<mj-section><mj-column><mj-text>Gold member</mj-text></mj-column></mj-section>"
    body = mjml(
        "<mj-text>x</mj-text>", outside=f"{{% if customer.points < 100 %}}{section}{{% endif %}}"
    )
    assert "Gold member" in str(email(body, {"customer": CUSTOMER | {"points": 50}})["html"])
    assert "Gold member" not in str(email(body, {"customer": CUSTOMER | {"points": 500}})["html"])


def test_a_for_loop_over_table_rows_stays_inside_the_table() -> None:
    # The HTML parser of the CSS inliner moves stray text out of a table ("foster parenting").
    body = mjml(
        "<mj-table>{% for item in order.items %}<tr><td>{{ item.name }}</td>"
        '<td>{{ item.price | money: "EUR" }}</td></tr>{% endfor %}</mj-table>'
    )
    items = [{"name": "Tea", "price": 3}, {"name": "Cup", "price": Decimal("12.5")}]
    content = email(body, {"order": {"items": items}})
    html = re.sub(r' style="[^"]*"', "", str(content["html"]))
    assert (
        "<tbody><tr><td>Tea</td><td>€3.00</td></tr><tr><td>Cup</td><td>€12.50</td></tr></tbody>"
        in html
    )
    assert "Tea €3.00\nCup €12.50" in str(content["text"])


def test_a_loop_directly_in_a_handwritten_table_keeps_its_rows_in_the_table() -> None:
    body = "<table>{% for item in items %}<tr><td>{{ item }}</td></tr>{% endfor %}</table>"
    html = str(email(body, {"items": ["Tea", "Cup"]}, body_format="html")["html"])
    assert "<table><tbody><tr><td>Tea</td></tr><tr><td>Cup</td></tr></tbody></table>" in html


def test_a_block_at_the_start_of_an_html_fragment_stays_in_the_body() -> None:
    body = "{% capture hi %}Hi {{ customer.first_name }}{% endcapture %}<p>{{ hi }}!</p>"
    content = email(body, body_format="html")
    assert "<body><p>Hi Ann!</p></body>" in str(content["html"])
    assert content["text"] == "Hi Ann!\n"


def test_a_style_rule_ends_up_in_a_style_attribute() -> None:
    body = (
        '<html><head><style>p.note { color: #c00000; }</style></head><body><p class="note">Hi</p>'
    )
    html = str(email(body, body_format="html")["html"])
    assert re.search(r'<p class="note" style="color: #c00000;?">Hi</p>', html)
    assert "p.note" not in html


def test_an_mj_style_rule_is_inlined_too() -> None:
    body = mjml(
        '<mj-text css-class="hl">Hi</mj-text>', head="<mj-style>.hl { color: #00a000 }</mj-style>"
    )
    html = str(email(body)["html"])
    assert re.search(r'class="hl"[^>]*style="[^"]*color: #00a000', html)


def test_media_queries_stay_in_a_style_tag() -> None:
    body = "<style>@media (max-width: 480px) { p { color: blue } }</style><p>Hi</p>"
    html = str(email(body, body_format="html")["html"])
    assert "@media (max-width: 480px)" in html


def test_the_text_part_is_readable_plain_text_with_links_after_their_text() -> None:
    body = mjml(
        "<mj-text><h1>Hello {{ customer.first_name }}!</h1>"
        "<p>50% off *today* for_you - <b>only</b> 1. day</p>"
        '<p><a href="{{ links.shop }}?a=1&b=2">Shop now</a> or <a href="mailto:help@shop.example">'
        'write</a> or <a href="https://shop.example/x">https://shop.example/x</a></p></mj-text>'
    )
    text = str(email(body)["text"])
    assert "Hello Ann!" in text
    assert "50% off *today* for_you - only 1. day" in text
    assert "Shop now (https://shop.example/s?a=1&b=2)" in text
    assert "write (mailto:help@shop.example)" in text
    assert "or https://shop.example/x\n" in text
    assert "<" not in text and "\\" not in text and "**" not in text


def test_the_text_part_has_no_runs_of_blank_lines_from_false_ifs() -> None:
    body = "<p>Hi</p>\n{% if customer.gone %}\n<p>Gone</p>\n{% endif %}\n\n\n<p>Bye</p>"
    assert email(body, body_format="html")["text"] == "Hi\n\nBye\n"


def test_the_preheader_is_a_hidden_span_right_after_body() -> None:
    source = {"subject": "s", "preheader": "Your order {{ order.id }} & more", "body": "<p>Hi</p>"}
    context = RenderContext({"order": {"id": "<42>"}})
    content = render(compile_source(EMAIL, source | {"format": "html"}), context, strict=True)
    html = str(content["html"])
    body_open = re.search(r"<body[^>]*>", html)
    assert body_open is not None
    after = html[body_open.end() :]
    assert after.startswith('<span style="display:none;')
    assert after.index("Your order &lt;42&gt; &amp; more</span>") < after.index("<p>Hi</p>")
    assert content["preheader"] == "Your order <42> & more"


def test_no_preview_span_without_a_preheader() -> None:
    assert "display:none" not in str(email("<p>Hi</p>", body_format="html")["html"])


def test_the_subject_is_one_line() -> None:
    source = {"subject": "Hi\n{{ customer.first_name }}  !", "body": "<p>x</p>", "format": "html"}
    content = render(
        compile_source(EMAIL, source), RenderContext({"customer": CUSTOMER}), strict=True
    )
    assert content["subject"] == "Hi Ann !"


def test_an_email_renders_all_four_parts() -> None:
    content = email(mjml("<mj-text>Hi {{ customer.first_name }}</mj-text>"))
    assert set(content) == {"subject", "preheader", "html", "text"}
    assert content["subject"] == "Hello Ann"
    assert content["text"] == "Hi Ann\n"


# --- Filters --------------------------------------------------------------------------------


def test_money_is_formatted_in_the_render_locale() -> None:
    compiled = sms('{{ total | money: "EUR" }}')
    assert body_of(compiled, {"total": 1234.5}, locale="de-DE") == "1.234,50 €"  # SMS: plain space
    assert body_of(compiled, {"total": 1234.5}, locale="en") == "€1,234.50"
    assert body_of(compiled, {"total": "1234.5"}, locale="en_US") == "€1,234.50"
    assert body_of(sms('{{ 5 | money: "usd" }}'), locale="en-US") == "$5.00"


def test_money_on_bad_input_fails_clearly_in_strict_mode_and_is_empty_in_lenient() -> None:
    compiled = sms('Total: {{ total | money: "EUR" }}')
    assert "money: expected an amount" in failure(compiled, {"total": "lots"})
    assert body_of(compiled, {"total": "lots"}, strict=False) == "Total: "
    assert "currency code" in failure(sms("{{ 5 | money }}"))
    assert "currency code" in failure(sms('{{ 5 | money: "euro" }}'))


def test_money_on_a_missing_amount_names_it_in_strict_mode() -> None:
    compiled = sms('{{ order.total | money: "EUR" }}')
    assert failure(compiled, {"order": {}}) == "order.total is not defined (body, line 1)"
    assert body_of(compiled, {"order": {}}, strict=False) == ""


def test_local_date_converts_to_the_render_time_zone_before_taking_the_day() -> None:
    compiled = sms('{{ at | local_date: "long" }}')
    at = "2024-07-01T23:30:00Z"
    assert body_of(compiled, {"at": at}, locale="de-DE", timezone="Europe/Berlin") == "2. Juli 2024"
    assert body_of(compiled, {"at": at}, locale="en", timezone="America/New_York") == "July 1, 2024"


def test_local_datetime_follows_daylight_saving_time() -> None:
    compiled = sms('{{ at | local_datetime: "yyyy-MM-dd HH:mm" }}')

    def berlin(at: object) -> str:
        return body_of(compiled, {"at": at}, locale="de-DE", timezone="Europe/Berlin")

    # Clocks went from 02:00 to 03:00 in Berlin on 31 March 2024 (01:00 UTC).
    assert berlin("2024-03-31T00:30:00Z") == "2024-03-31 01:30"
    assert berlin("2024-03-31T01:30:00+00:00") == "2024-03-31 03:30"
    assert berlin(datetime(2024, 1, 15, 12, 0, tzinfo=UTC)) == "2024-01-15 13:00"


def test_local_datetime_styles_are_localised() -> None:
    compiled = sms('{{ at | local_datetime: "short" }}')
    at = "2024-07-02T08:05:00Z"
    assert (
        body_of(compiled, {"at": at}, locale="de-DE", timezone="Europe/Berlin") == "02.07.24, 10:05"
    )


def test_a_naive_datetime_is_taken_as_utc() -> None:
    compiled = sms('{{ at | local_datetime: "HH:mm" }}')
    naive = datetime(2024, 7, 2, 8, 5)
    assert body_of(compiled, {"at": naive}, timezone="Asia/Tokyo") == "17:05"


def test_local_date_of_a_plain_date_is_not_shifted() -> None:
    compiled = sms('{{ birthday | local_date: "d MMMM" }}')
    assert body_of(compiled, {"birthday": "1990-03-04"}, timezone="Pacific/Honolulu") == "4 March"


def test_date_filters_fail_clearly_on_bad_input() -> None:
    assert "local_date: expected a date" in failure(sms("{{ at | local_date }}"), {"at": "soon"})
    assert "local_datetime: expected a date-time" in failure(
        sms("{{ at | local_datetime }}"), {"at": "2024-03-04"}
    )
    compiled = sms("{{ at | local_date }}")
    context = RenderContext({"at": "2024-03-04"}, timezone="Mars/Olympus")
    with pytest.raises(RenderFailed) as failed:
        render(compiled, context, strict=True)
    assert "unknown time zone 'Mars/Olympus'" in failed.value.reason


def test_json_quotes_values_for_webhook_bodies() -> None:
    assert body_of(sms("{{ name | json }}"), {"name": 'Ann "A" O\'Neil'}) == '"Ann \\"A\\" O\'Neil"'
    assert body_of(sms("{{ missing | json }}"), strict=False) == "null"


# --- Limits ---------------------------------------------------------------------------------


def test_a_huge_loop_fails_cleanly_instead_of_running() -> None:
    compiled = sms("{% for i in (1..100000000) %}x{% endfor %}")
    assert "loop iteration limit" in failure(compiled)  # refused before the first iteration


def test_nested_loops_count_towards_the_limit_together() -> None:
    compiled = sms("{% for i in (1..200) %}{% for j in (1..200) %}{% endfor %}{% endfor %}")
    assert "loop iteration limit" in failure(compiled)


def test_too_much_output_fails_cleanly() -> None:
    compiled = sms("{% for i in (1..5000) %}{{ chunk }}{% endfor %}")
    assert "output stream limit" in failure(compiled, {"chunk": "x" * 1000})


def test_doubling_an_assigned_string_hits_the_namespace_limit() -> None:
    compiled = sms(
        '{% assign s = "xxxxxxxxxx" %}{% for i in (1..40) %}{% assign s = s | append: s %}'
        "{% endfor %}{{ s | size }}"
    )
    assert "namespace limit" in failure(compiled)


def test_limits_apply_in_lenient_mode_too() -> None:
    compiled = sms("{% for i in (1..100000000) %}x{% endfor %}")
    with pytest.raises(RenderFailed):
        body_of(compiled, strict=False)


# --- Channels -------------------------------------------------------------------------------


def test_sms_reports_encoding_and_segments() -> None:
    context = RenderContext({"name": "Ann"})
    content = render(sms("Hi {{ name }}, 5 € off"), context, strict=True)
    assert content == {"body": "Hi Ann, 5 € off", "encoding": "gsm7", "segments": 1}
    content = render(sms("Привет {{ name }}" + "!" * 61), context, strict=True)
    assert (content["encoding"], content["segments"]) == ("ucs2", 2)  # 71 units


WHATSAPP_SOURCE = {
    "body": "Hi {{ customer.first_name }}, your order shipped",
    "template_name": "order_shipped",
    "template_language": "de",
    "parameters": ["{{ customer.first_name }}", "{{ order.id }}"],
}
WHATSAPP_VARIABLES = {"customer": CUSTOMER, "order": {"id": "A-7"}}


def test_whatsapp_sends_free_text_inside_the_window() -> None:
    compiled = compile_source(MessageChannel.WHATSAPP, WHATSAPP_SOURCE)
    context = RenderContext(WHATSAPP_VARIABLES)
    content = render(compiled, context, strict=True, whatsapp_free_text=True)
    assert content == {"body": "Hi Ann, your order shipped"}


def test_whatsapp_sends_the_template_with_rendered_parameters_outside_the_window() -> None:
    compiled = compile_source(MessageChannel.WHATSAPP, WHATSAPP_SOURCE)
    content = render(compiled, RenderContext(WHATSAPP_VARIABLES), strict=True)
    assert content == {
        "template": {"name": "order_shipped", "language": "de", "parameters": ["Ann", "A-7"]}
    }


def test_whatsapp_without_a_body_uses_the_template_in_the_window_too() -> None:
    source = WHATSAPP_SOURCE | {"body": "", "template_language": ""}
    compiled = compile_source(MessageChannel.WHATSAPP, source)
    context = RenderContext(WHATSAPP_VARIABLES, locale="pt-BR")
    content = render(compiled, context, strict=True, whatsapp_free_text=True)
    assert content["template"] == {
        "name": "order_shipped",
        "language": "pt_BR",
        "parameters": ["Ann", "A-7"],
    }


def test_whatsapp_outside_the_window_without_a_template_fails() -> None:
    compiled = compile_source(MessageChannel.WHATSAPP, {"body": "Hi"})
    with pytest.raises(RenderFailed):
        render(compiled, RenderContext({}), strict=True)


def test_a_webhook_payload_is_the_json_object_the_body_renders_to() -> None:
    source = {
        "url": "https://hooks.example/{{ customer.id }}",
        "body": '{"name": {{ customer.first_name | json }}, "total": {{ total }}, "tags": ["a"]}',
    }
    compiled = compile_source(MessageChannel.WEBHOOK, source)
    context = RenderContext(
        {"customer": {"id": "c1", "first_name": 'A "quoted" name'}, "total": 12.5}
    )
    content = render(compiled, context, strict=True)
    assert content == {
        "url": "https://hooks.example/c1",
        "payload": {"name": 'A "quoted" name', "total": 12.5, "tags": ["a"]},
    }


def test_a_webhook_body_is_only_parsed_as_liquid_at_check_time() -> None:
    source = {"url": "https://h.example", "body": "{{ payload }}"}
    assert check(MessageChannel.WEBHOOK, source) == []
    assert check(MessageChannel.WEBHOOK, source | {"body": "{{ payload "})


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "{not json", ""])
def test_a_webhook_body_that_is_not_a_json_object_fails(body: str) -> None:
    compiled = compile_source(MessageChannel.WEBHOOK, {"url": "https://h.example", "body": body})
    with pytest.raises(RenderFailed) as failed:
        render(compiled, RenderContext({}), strict=True)
    assert "webhook body" in failed.value.reason


def test_push_and_inapp_render_every_field() -> None:
    push = compile_source(
        MessageChannel.PUSH,
        {
            "title": "Hi {{ customer.first_name }}",
            "url": "https://s.example/{{ customer.id }}",
            "actions": [{"action": "view", "title": "View {{ customer.id }}", "url": "/o"}],
        },
    )
    context = RenderContext({"customer": CUSTOMER})
    assert render(push, context, strict=True) == {
        "title": "Hi Ann",
        "body": "",
        "icon": "",
        "url": "https://s.example/c1",
        "actions": [{"action": "view", "title": "View c1", "url": "/o"}],
    }
    inapp = compile_source(
        MessageChannel.INAPP, {"title": "{{ customer.first_name }}", "link": "/x"}
    )
    assert render(inapp, context, strict=True) == {"title": "Ann", "body": "", "link": "/x"}


# --- Locales --------------------------------------------------------------------------------


def test_pick_locale_prefers_an_exact_match_in_any_spelling() -> None:
    assert pick_locale(["en", "de-DE", "de-AT"], "de_at", "en") == "de-AT"
    assert pick_locale(["en", "de-DE"], "DE-de", "en") == "de-DE"


def test_pick_locale_falls_back_to_the_same_language() -> None:
    assert pick_locale(["en", "de"], "de-AT", "en") == "de"
    assert pick_locale(["en", "de-DE"], "de", "en") == "de-DE"
    assert pick_locale(["en", "de-DE", "de"], "de-CH", "en") == "de"


def test_pick_locale_falls_back_to_the_default() -> None:
    assert pick_locale(["en", "de"], "fr-FR", "en") == "en"
    assert pick_locale(["en", "de"], None, "de") == "de"
    assert pick_locale(["en", "de"], "", "de") == "de"


# --- Tracked links and the open pixel -------------------------------------------------------


def click(url: str) -> str:
    return "https://t.example/c?u=" + url


def test_http_links_go_through_the_click_url() -> None:
    html = '<a href="https://shop.example/a?x=1&amp;y=2">A</a> <A class="b" HREF=\'http://b.example\'>B</A>'
    assert rewrite_links(html, click) == (
        '<a href="https://t.example/c?u=https://shop.example/a?x=1&amp;y=2">A</a> '
        '<A class="b" HREF="https://t.example/c?u=http://b.example">B</A>'
    )


def test_mailto_tel_anchors_and_kept_links_are_not_rewritten() -> None:
    html = (
        '<a href="mailto:a@b.example">m</a><a href="tel:+491">t</a><a href="#top">h</a>'
        '<a href="https://x.example/unsubscribe/abc">u</a><link href="https://fonts.example/css">'
    )
    assert rewrite_links(html, click, keep={"https://x.example/unsubscribe/abc"}) == html


def test_the_open_pixel_goes_before_the_closing_body() -> None:
    html = open_pixel("<html><body><p>Hi</p></body></html>", "https://t.example/o?d=1&s=2")
    assert html.startswith("<html><body><p>Hi</p><img ")
    assert html.endswith("></body></html>")
    assert 'src="https://t.example/o?d=1&amp;s=2"' in html
    assert 'width="1" height="1"' in html


def test_the_open_pixel_is_appended_without_a_body() -> None:
    assert open_pixel("<p>Hi</p>", "https://t.example/o").startswith("<p>Hi</p><img ")


@given(
    st.lists(
        st.sampled_from(["https://a.example/x", "mailto:q@a.example", "#", "/rel"]), max_size=8
    )
)
def test_rewriting_touches_exactly_the_http_links(urls: list[str]) -> None:
    html = "".join(f'<p><a href="{url}">{index}</a></p>' for index, url in enumerate(urls))
    rewritten = rewrite_links(html, click)
    expected = [click(url) if url.startswith("https://") else url for url in urls]
    assert re.findall(r'href="([^"]*)"', rewritten) == expected


def test_sms_money_in_a_german_locale_stays_gsm7() -> None:
    """Babel writes "38,50\u00a0€" with a no-break space, which GSM-7 lacks: the SMS gets a
    plain space, so it stays one 160-character segment instead of UCS-2."""
    compiled = compile_source(SMS, {"body": "Summe: {{ 38.5 | money: 'EUR' }}"})
    rendered = render(compiled, RenderContext({}, locale="de-DE"), strict=True)
    assert rendered == {"body": "Summe: 38,50 €", "encoding": "gsm7", "segments": 1}
