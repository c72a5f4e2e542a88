#!/usr/bin/env python3
"""Writes language_cases.json: Jinja constructs rendered by Python Jinja2 under the chat-template
environment transformers uses (trim_blocks, lstrip_blocks, loop controls, its tojson,
raise_exception, a fixed strftime_now). language_test.cc renders each case with the C++
interpreter and compares. Run: python3 make_language_cases.py > language_cases.json"""
import datetime
import json
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox

NOW = datetime.datetime(2025, 3, 9, 14, 5, 7)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


class GenerationTag(jinja2.ext.Extension):
    """{% generation %}...{% endgeneration %}: renders its body (transformers marks the span)."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        call = self.call_method("_render_body")
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _render_body(self, caller):
        return caller()


env = jinja2.sandbox.ImmutableSandboxedEnvironment(
    trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = lambda fmt: NOW.strftime(fmt)

MESSAGES = [{"role": "system", "content": " Be brief. "},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello <b>&</b>"},
            {"role": "user", "content": "Bye"}]
V = {"messages": MESSAGES, "n": 7, "f": 2.5, "s": "  Hello, World  ", "xs": [3, 1, 2],
     "d": {"b": 1, "a": [1, 2, {"k": None}], "c": "x"}, "t": True, "none": None,
     "u": "héllo ünïcode", "empty": ""}

CASES = [
    # Whitespace control and trim_blocks/lstrip_blocks.
    ("ws_trim_blocks", "{% if t %}\nyes\n{% endif %}\nend", V),
    ("ws_lstrip_blocks", "a\n    {% if t %}\n    b\n    {% endif %}\nc", V),
    ("ws_minus", "a  \n  {%- if t -%}  \n  b  \n  {%- endif -%}  \n  c", V),
    ("ws_plus", "a\n    {%+ if t +%}\nb\n{% endif %}", V),
    ("ws_variable_minus", "x   {{- 'y' -}}   z", V),
    ("ws_variable_not_lstripped", "a\n    {{ 'v' }}\n", V),
    ("ws_comment", "a\n  {# note #}\nb {#- trimmed -#}   c", V),
    ("ws_raw", "{% raw %}{{ not evaluated }}{% endraw %}", V),
    ("ws_trailing_newline_dropped_once", "x\n\n", V),
    ("ws_crlf", "a\r\n{% if t %}\r\nb\r\n{% endif %}\r\nc", V),
    # Literals and operators.
    ("lit_strings", "{{ 'a\\tb' ~ \"c\\\"d\" ~ '\\u00e9\\x41' }}", V),
    ("lit_adjacent_strings", "{{ 'a' 'b' \"c\" }}", V),
    ("lit_numbers", "{{ 1_000 }} {{ 2.50 }} {{ 1e3 }} {{ 0.1 + 0.2 }} {{ 1e-7 }} {{ 1e16 }} {{ 123456789.125 }}", V),
    ("lit_list_dict", "{{ [1, 'a', none, true, 2.0] }} {{ {'k': 'v', 'n': [1]} }}", V),
    ("lit_tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }} {{ (1, 2) }}", V),
    ("op_arith", "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ n * 2 - 1 }} {{ f * 2 }}", V),
    ("op_precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ -2 ** 2 }} {{ 'a' ~ (1 + 2) }} {{ not 1 == 2 }}", V),
    ("op_string_repeat", "{{ 'ab' * 3 }}{{ [1] * 2 }}", V),
    ("op_compare_chain", "{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 == 1.0 }} {{ true == 1 }}", V),
    ("op_in", "{{ 'ell' in s }} {{ 2 in xs }} {{ 'a' in d }} {{ 'z' not in d }} {{ 5 not in xs }}", V),
    ("op_and_or_values", "{{ 0 or 'x' }} {{ 'a' and 'b' }} {{ none or [] or 'last' }} {{ '' and 1 }}", V),
    ("op_conditional", "{{ 'y' if t else 'n' }} {{ 'y' if none else 'n' }} [{{ 'y' if none }}]", V),
    ("op_concat_types", "{{ 1 ~ none ~ true ~ [1] ~ missing }}", V),
    ("op_dict_equality", "{{ {'a': 1} == {'a': 1} }} {{ messages[1] == {'role': 'user', 'content': 'Hi'} }}", V),
    # Variables, attributes, subscripts, slices.
    ("attr_and_item", "{{ messages[1].role }} {{ messages[1]['content'] }} {{ d.a[2].k }} {{ messages.0.role }}", V),
    ("attr_missing_is_undefined", "[{{ d.missing }}] {{ d.missing is defined }} {{ s.nothing is defined }} {{ none.x is defined }}", V),
    ("slices", "{{ xs[1:] }} {{ xs[:-1] }} {{ xs[::-1] }} {{ xs[-1] }} {{ s[2:7] }} {{ u[1:4] }} {{ u[-3:] }} {{ xs[5:] }} {{ xs[::2] }}", V),
    ("index_out_of_range", "[{{ xs[10] }}] {{ xs[10] is defined }}", V),
    ("reassign_messages", "{% set messages = messages[1:] %}{{ messages | length }} {{ messages[0].role }}", V),
    # Statements.
    ("for_loop_vars", "{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.length }}/{{ loop.first }}/{{ loop.last }} {% endfor %}", V),
    ("for_filtered", "{% for m in messages if m.role == 'user' %}{{ loop.index }}{{ m.content }}{{ loop.last }} {% endfor %}", V),
    ("for_else", "{% for x in [] %}x{% else %}empty{% endfor %}", V),
    ("for_else_after_break_or_continue", "{% for x in [1, 2] %}{% break %}{% else %}E1{% endfor %}{% for x in [1, 2] %}{% continue %}{% else %}E2{% endfor %}{% for x in [1, 2] %}{% if x == 1 %}{% continue %}{% endif %}{% else %}E3{% endfor %}", V),
    ("tests_lower_upper_of_str", "{{ 'abc' is lower }} {{ 'aBc' is lower }} {{ '123' is lower }} {{ 'AB1' is upper }} {{ 5 is upper }} {{ ['a'] is lower }}", V),
    ("filter_safe_is_a_string", "{{ (2 | safe) ~ '!' }} {{ 1 | safe is string }}", V),
    ("tests_even_odd_float", "{{ 2.0 is even }} {{ 3.0 is odd }} {{ 0.5 is even }}", V),
    ("generators_are_truthy", "{{ 'yes' if [] | select else 'no' }} {{ 'yes' if d | items else 'no' }} {{ 'yes' if messages | selectattr('role', 'equalto', 'tool') else 'no' }} {{ messages | selectattr('role', 'equalto', 'user') | list | length }} {{ messages | map(attribute='role') | first }}", V),
    ("error_generator_has_no_len", "{{ messages | selectattr('role', 'equalto', 'user') | length }}", V),
    ("filter_title_is_jinjas", "{{ \"it's a-b (c) {d} x_y 'q'\" | title }} {{ \"it's\".title() }} {{ d | title }}", V),
    ("filter_wordcount", "{{ 'Hello, big world_1!' | wordcount }} {{ [] | wordcount }} {{ xs | wordcount }}", V),
    ("op_in_undefined", "{{ 'a' in missing }} {{ 'a' not in missing }}", V),
    ("error_int_of_undefined", "{{ missing | int }}", V),
    ("for_unpack_items", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", V),
    ("for_dict_keys", "{% for k in d %}{{ k }}{% endfor %}", V),
    ("for_string_chars", "{% for c in 'héj' %}[{{ c }}]{% endfor %}", V),
    ("for_break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}", V),
    ("for_prev_next_cycle", "{% for x in xs %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }}{{ loop.cycle('a', 'b') }} {% endfor %}", V),
    ("for_nested_loop", "{% for a in [1, 2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }}{% endfor %}{{ loop.index }} {% endfor %}", V),
    ("set_does_not_leak_from_for", "{% set x = 'outer' %}{% for i in [1] %}{% set x = 'inner' %}{{ x }}{% endfor %} {{ x }}", V),
    ("set_leaks_from_if", "{% if t %}{% set x = 'from if' %}{% endif %}{{ x }}", V),
    ("namespace", "{% set ns = namespace(count=0, seen=false) %}{% for m in messages %}{% set ns.count = ns.count + 1 %}{% endfor %}{{ ns.count }} {{ ns.seen }}", V),
    ("namespace_empty_then_set", "{% set ns = namespace() %}{% set ns.x = 3 %}{{ ns.x }}", V),
    ("set_block", "{% set block %}a{{ n }}b{% endset %}[{{ block }}]", V),
    ("if_elif_else", "{% for x in [1, 2, 3] %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %} {% endfor %}", V),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('a') }} {{ greet('b', '?') }} {{ greet(punct='.', name='c') }}", V),
    ("macro_sees_globals", "{% macro count() %}{{ messages | length }}{% endmacro %}{{ count() }}", V),
    ("macro_missing_arg", "{% macro m(a, b) %}[{{ a }}|{{ b }}]{{ b is defined }}{% endmacro %}{{ m(1) }}", V),
    ("generation_block", "{% generation %}gen {{ n }}{% endgeneration %}", V),
    # Filters.
    ("filter_trim", "[{{ s | trim }}] [{{ '\u3000x\u00a0\u2028' | trim }}] [{{ '\u200bx' | trim }}] [{{ 'xxhixx' | trim('x') }}]", V),
    ("filter_case", "{{ 'hello world' | upper }} {{ 'ABC' | lower }} {{ 'hello wORLD' | title }} {{ 'hELLO' | capitalize }} {{ u | upper }}", V),
    ("filter_length", "{{ messages | length }} {{ 'héllo' | length }} {{ d | count }} {{ missing | length }}", V),
    ("filter_join", "{{ xs | join(', ') }} {{ messages | join('|', attribute='role') }} {{ 'abc' | join('-') }}", V),
    ("filter_default", "{{ missing | default('dflt') }} {{ none | default('x') }} {{ '' | default('e', true) }} {{ n | d(1) }}", V),
    ("filter_list_items", "{{ d | items | list }} {{ 'ab' | list }} {{ d | list }}", V),
    ("filter_selectattr", "{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }}", V),
    ("filter_rejectattr", "{{ messages | rejectattr('role', 'in', ['user', 'system']) | list | length }}", V),
    ("filter_select_reject", "{{ [0, 1, 2, 3, 4] | select('odd') | list }} {{ [0, 1, 2] | reject | list }} {{ ['a', 'b'] | reject('equalto', 'a') | list }}", V),
    ("filter_map_filter", "{{ ['a', 'b'] | map('upper') | join }} {{ messages | map(attribute='role') | unique | list }}", V),
    ("filter_first_last_reverse", "{{ xs | first }} {{ xs | last }} {{ xs | reverse | list }} {{ 'abc' | reverse }}", V),
    ("filter_sort_min_max_sum", "{{ xs | sort }} {{ xs | sort(reverse=true) }} {{ ['b', 'A', 'c'] | sort }} {{ xs | min }} {{ xs | max }} {{ xs | sum }}", V),
    ("filter_replace", "{{ s | replace('l', 'L') }} {{ 'aaa' | replace('a', 'b', 2) }}", V),
    ("filter_int_float_abs", "{{ '42' | int }} {{ 'x' | int }} {{ 3.9 | int }} {{ '2.5' | float }} {{ -3 | abs }} {{ n | float }}", V),
    ("filter_string", "{{ 5 | string }} {{ none | string }} {{ [1, 'a'] | string }} {{ d | string }}", V),
    ("filter_indent", "{{ 'a\nb\n\nc' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}", V),
    ("filter_escape", "{{ '<a href=\"x\">&\\'</a>' | e }}", V),
    ("filter_tojson", "{{ d | tojson }} {{ messages[2] | tojson }} {{ 'é\"\\n<>' | tojson }} {{ [1.5, true, none] | tojson }}", V),
    ("filter_tojson_indent", "{{ d | tojson(indent=4) }}\n{{ [] | tojson(indent=2) }} {{ {} | tojson(indent=2) }}", V),
    ("filter_tojson_sort_separators", "{{ d | tojson(sort_keys=true) }} {{ d | tojson(separators=(',', ':')) }}", V),
    ("filter_chained_precedence", "{{ 'a' + ' b ' | trim + 'c' }} {{ -3 | abs }} {{ messages | length > 2 }}", V),
    # Tests.
    ("tests_types", "{{ s is string }} {{ n is number }} {{ n is integer }} {{ f is float }} {{ d is mapping }} {{ xs is iterable }} {{ s is iterable }} {{ none is none }} {{ t is boolean }} {{ missing is undefined }} {{ xs is sequence }} {{ n is mapping }}", V),
    ("tests_values", "{{ n is odd }} {{ n is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ n is equalto 7 }} {{ n is eq(7) }} {{ none is sameas none }} {{ t is true }} {{ 1 is true }} {{ 'abc' is lower }}", V),
    ("tests_not_precedence", "{{ not missing is defined }} {{ n is not none }} {{ not n is none }}", V),
    ("tests_in_and_comparisons", "{{ 2 is in xs }} {{ 3 is gt 2 }} {{ 3 is lt 2 }} {{ 3 is ge 3 }} {{ 3 is ne 3 }}", V),
    # String and dict methods.
    ("str_methods", "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ 'xxaxx'.strip('x') }}|{{ s.upper() }}|{{ s.lower() }}|{{ 'a b'.title() }}|{{ 'abc'.capitalize() }}", V),
    ("str_startswith_endswith", "{{ 'hello'.startswith('he') }} {{ 'hello'.endswith('lo') }} {{ 'hello'.startswith(('x', 'h')) }} {{ 'hello'.endswith('x') }}", V),
    ("str_split", "{{ 'a,b,,c'.split(',') }} {{ '  a  b  '.split() }} {{ 'a<t>b<t>c'.split('<t>')[-1] }} {{ 'a,b,c'.split(',', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ ' a b c '.split(none, 1) }}", V),
    ("str_replace_find_count", "{{ 'aXbXc'.replace('X', '-') }} {{ 'hello'.find('l') }} {{ 'hello'.find('z') }} {{ 'hello'.count('l') }} {{ 'ab'.replace('', '.') }}", V),
    ("str_join_method", "{{ ', '.join(['a', 'b']) }}", V),
    ("str_predicates", "{{ '123'.isdigit() }} {{ 'ab'.isalpha() }} {{ ' '.isspace() }} {{ ''.isspace() }}", V),
    ("dict_methods", "{{ d.keys() | list }} {{ d.values() | list }} {{ d.get('c') }} {{ d.get('zz', 'fallback') }} {{ d.get('zz') }}", V),
    # Globals.
    ("range", "{{ range(3) | list }} {{ range(1, 10, 3) | list }} {{ range(5, 0, -2) | list }}", V),
    ("dict_global", "{{ dict(a=1, b='x') }}", V),
    ("strftime_now", "{{ strftime_now('%d %b %Y') }} {{ strftime_now('%Y-%m-%d %H:%M:%S') }} {{ strftime_now('%A %B') }}", V),
    # Printing values.
    ("print_values", "{{ none }} {{ true }} {{ false }} {{ 1.0 }} {{ -0.5 }} {{ [none, true, 'it\\'s', \"q\\\"\", 'a\\nb'] }} {{ {'k': {'n': none}} }}", V),
    ("print_unicode_repr", "{{ ['é', '\u200d', '\u00a0', '\t'] }}", V),
    ("content_is_data", "{{ messages[2].content }} {% raw %}{% if %}{% endraw %}", V),
    # Errors.
    ("error_raise", "{{ raise_exception('custom failure: ' ~ n) }}", V),
    ("error_concat_binds_looser_than_plus", "{{ 'a' ~ 1 + 2 }}", V),
    ("error_str_plus_int", "{{ 'a' + 1 }}", V),
    ("error_undefined_attribute", "{{ missing.attr }}", V),
    ("error_not_callable", "{{ n() }}", V),
    ("error_raise_in_loop", "{% for m in messages %}{% if m.role == 'assistant' %}{{ raise_exception('no assistant') }}{% endif %}{% endfor %}", V),
]


def main():
    out = []
    for name, source, variables in CASES:
        case = {"name": name, "template": source}
        try:
            case["rendered"] = env.from_string(source).render(**variables)
        except Exception as e:  # pylint: disable=broad-except
            case["error"] = str(e)
            case["error_type"] = type(e).__name__
        out.append(case)
    json.dump({"variables": V, "cases": out}, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


main()
