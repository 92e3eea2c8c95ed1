"""The Go text/template subset (config/gotemplate), checked against the outputs Go's documentation and Sprig's
give for the same template and data. Settings data is built as Go decodes JSON: every number a float."""

from __future__ import annotations

import pytest

from lambdagate.config.gotemplate import Limits, TemplateError, TemplateSet


def render(source: str, data=None, *, extra: dict | None = None, limits: Limits | None = None, **files: str) -> str:
    templates = TemplateSet(extra, limits)
    templates.add("main.tmpl", source)
    for name, text in files.items():
        templates.add(name.replace("_", "."), text)
    return templates.render("main.tmpl", data)


GO_CASES = [
    # fields, missing keys and how values print (fmt's %v)
    ("{{ .a }}", {"a": 8080.0}, "8080"),
    ("{{ .a }}", {"a": 1000000.0}, "1000000"),
    ("{{ .a }}", {"a": 1e21}, "1e+21"),
    ("{{ .a }}", {"a": 0.5}, "0.5"),
    ("{{ .a }}", {"a": 0.00001}, "1e-05"),
    ("{{ .a }}", {"a": -2.25}, "-2.25"),
    ("{{ .missing }}", {}, "<no value>"),
    ("{{ .a }}", {"a": None}, "<no value>"),
    (
        "{{ .l }} {{ .m }} {{ .t }}",
        {"l": [1.0, "a", None], "m": {"b": True, "a": 0.5}, "t": False},
        "[1 a <nil>] map[a:0.5 b:true] false",
    ),
    ("{{ .a.b.c }}", {"a": {"b": {"c": "deep"}}}, "deep"),
    ("{{ $.a }}{{ $ }}", "root", None),  # placeholder, replaced below
    # text and trimming
    ("a  {{- 3 -}}  b", None, "a3b"),
    ("a {{-3}} b", None, "a -3 b"),  # no space: the number -3, not a trim marker
    ("x{{/* a comment */}}y", None, "xy"),
    ("x \n {{- /* trimmed comment */ -}} \n y", None, "xy"),
    # literals
    (
        '{{ "q\\"\\t" }}|{{ `raw\\n` }}|{{ \'a\' }}|{{ 0x1F }}|{{ 1_000 }}|{{ 1.5e3 }}|{{ true }}',
        None,
        'q"\t|raw\\n|97|31|1000|1500|true',
    ),
    # if / else if / else, with, range
    ('{{ if eq .x "a" }}A{{ else if eq .x "b" }}B{{ else }}C{{ end }}', {"x": "b"}, "B"),
    ("{{ if .x }}yes{{ else }}no{{ end }}", {"x": []}, "no"),
    ("{{ if .x }}yes{{ end }}", {"x": 0.0}, ""),
    ("{{ with .a }}{{ .b }}{{ else }}none{{ end }}", {"a": {"b": "B"}}, "B"),
    ("{{ with .a }}{{ .b }}{{ else }}none{{ end }}", {"a": ""}, "none"),
    ("{{ range $i, $e := .l }}{{ if $i }},{{ end }}{{ $e }}{{ end }}", {"l": ["a", "b", "c"]}, "a,b,c"),
    ("{{ range .l }}[{{ . }}]{{ end }}", {"l": [1.0, 2.0]}, "[1][2]"),
    ("{{ range $k, $v := .m }}{{ $k }}={{ $v }};{{ end }}", {"m": {"b": 1.0, "a": 2.0, "c": 3.0}}, "a=2;b=1;c=3;"),
    ("{{ range $v := .m }}{{ $v }}{{ end }}", {"m": {"b": 1.0, "a": 2.0}}, "21"),
    ("{{ range .none }}x{{ else }}empty{{ end }}", {}, "empty"),
    ("{{ range 3 }}{{ . }}{{ end }}", None, "012"),
    (
        "{{ range .l }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ if eq . 4 }}{{ break }}{{ end }}{{ . }}{{ end }}",
        {"l": [1, 2, 3, 4, 5]},
        "13",
    ),
    # variables: scope ends with the block, `=` assigns the outer one
    ("{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}", None, "21"),
    ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", None, "2"),
    ("{{ range $i, $e := .l }}{{ end }}{{ $.n }}", {"l": [1], "n": "root"}, "root"),
    # templates
    ('{{ define "T" }}[{{ . }}]{{ end }}{{ template "T" "x" }}{{ template "T" }}', None, "[x][<no value>]"),
    ('{{ block "B" . }}default {{ . }}{{ end }}', "d", "default d"),
    # pipelines, parentheses, functions
    ('{{ "a" | printf "%s-%s" "b" }}', None, "b-a"),
    ('{{ (index .m "k").x }}', {"m": {"k": {"x": "X"}}}, "X"),
    (
        '{{ len .l }} {{ len .s }} {{ index .l 1 }} {{ index .m "k" }}',
        {"l": [1, 2], "s": "héllo", "m": {"k": "v"}},
        "2 6 2 v",
    ),
    ('{{ index .m "nope" }}', {"m": {}}, "<no value>"),
    ('{{ or .a .b "c" }}|{{ and 1 0 2 }}|{{ and 1 2 }}|{{ or 0 "" }}|{{ not 0 }}', {}, "c|0|2||true"),
    ("{{ or .set .nope.deeper }}", {"set": "short-circuit"}, "short-circuit"),
    (
        '{{ eq 1 1 }} {{ eq "a" "b" "a" }} {{ ne 1 2 }} {{ lt 1 2 }} {{ le 2 2 }} {{ gt 1.5 2.5 }} {{ ge "b" "a" }}',
        None,
        "true true true true true false true",
    ),
    ("{{ eq .a .b }}", {"a": None, "b": None}, "true"),
    ('{{ print 1 2 "a" 3 "b" "c" }}|{{ println 1 "a" }}', None, "1 2a3bc|1 a\n"),
    (
        '{{ printf "%s-%d-%v-%05.1f-%q-%t-%x-%5s|%-4d|" "a" 3 .f 3.14159 "q" true 255 "r" 7 }}',
        {"f": 2.5},
        'a-3-2.5-003.1-"q"-true-ff-    r|7   |',
    ),
    ('{{ printf "%d" "s" }}|{{ printf "%s" }}|{{ printf "x" 1 }}', None, "%!d(string=s)|%!s(MISSING)|x%!(EXTRA int=1)"),
    (
        '{{ html "<a href=\'x\'>" }} {{ urlquery "a b&c" }} {{ js "it\'s" }}',
        None,
        "&lt;a href=&#39;x&#39;&gt; a+b%26c it\\'s",
    ),
]
GO_CASES[10] = ("{{ $.a }}|{{ $ }}", {"a": "x"}, "x|map[a:x]")

SPRIG_CASES = [
    ('{{ default "d" .x }}|{{ default "d" "v" }}|{{ default "d" 0 }}|{{ .x | default "p" }}', {}, "d|v|d|p"),
    ('{{ quote "a\\"b" 1 .nil }}|{{ squote "a" }}', {"nil": None}, '"a\\"b" "1"|\'a\''),
    (
        '{{ upper "ab" }} {{ lower "AB" }} {{ trim "  x " }} {{ replace "a" "b" "aa" }} {{ title "hello world" }}',
        None,
        "AB ab x bb Hello World",
    ),
    (
        '{{ trimPrefix "/" "/a" }} {{ trimSuffix "/" "a/" }} {{ contains "b" "abc" }} {{ hasPrefix "a" "abc" }}',
        None,
        "a a true true",
    ),
    ('{{ join "," .l }}|{{ join "-" (list 1 "a" 2.5) }}', {"l": ["x", "y"]}, "x,y|1-a-2.5"),
    ('{{ (split ":" "h:80")._1 }}|{{ splitList "," "a,b" }}|{{ (splitn ":" 2 "a:b:c")._1 }}', None, "80|[a b]|b:c"),
    ('{{ int ((split ":" (splitList "://" "http://h:4317" | last))._1) }}', None, "4317"),
    (
        '{{ list 1 "a" | toJson }}|{{ dict "b" 1 "a" "x" | toJson }}|{{ dict "k" "<v>" | toRawJson }}',
        None,
        '[1,"a"]|{"a":"x","b":1}|{"k":"<v>"}',
    ),
    (
        '{{ $d := dict "a" 1 }}{{ hasKey $d "a" }} {{ hasKey $d "b" }} {{ get $d "a" }} {{ keys $d }}',
        None,
        "true false 1 [a]",
    ),
    ('{{ $d := dict }}{{ $_ := set $d "k" "v" }}{{ $d.k }}', None, "v"),
    (
        '{{ add 1 "2" 3.9 }} {{ div 7 2 }} {{ div -7 2 }} {{ mod -7 2 }} {{ sub 1 3 }} {{ mul 2 3 4 }} {{ add1 1 }}',
        None,
        "6 3 -3 -1 -2 24 2",
    ),
    (
        '{{ max 1 5 3 }} {{ min 4 2 }} {{ int "12" }} {{ int 3.9 }} {{ int "x" }} {{ float64 "1.5" }}',
        None,
        "5 2 12 3 0 1.5",
    ),
    ('{{ b64enc "hi" }} {{ b64dec "aGk=" }} {{ toString 1.5 }} {{ cat "a" .n "b" }}', {"n": None}, "aGk= hi 1.5 a b"),
    (
        "{{ first .l }} {{ last .l }} {{ rest .l }} {{ initial .l }} {{ append .l 4 }} {{ concat .l (list 9) }}",
        {"l": [1, 2, 3]},
        "1 3 [2 3] [1 2] [1 2 3 4] [1 2 3 9]",
    ),
    (
        '{{ until 3 }} {{ has 2 .l }} {{ without .l 1 }} {{ uniq (list 1 1 2) }} {{ compact (list 0 1 "") }}',
        {"l": [1, 2]},
        "[0 1 2] true [2] [1 2] [1]",
    ),
    ('{{ empty "" }} {{ empty .m }} {{ coalesce 0 "" "x" }} {{ ternary "y" "n" true }}', {"m": {}}, "true true x y"),
    (
        '{{ indent 2 "a\\nb" }}|{{ nindent 1 "x" }}|{{ repeat 3 "ab" }}|{{ nospace "a b c" }}',
        None,
        "  a\n  b|\n x|ababab|abc",
    ),
    ('{{ regexMatch "^a.c$" "abc" }} {{ regexReplaceAll "a(x*)b" "-ab-axxb-" "${1}W" }}', None, "true -W-xxW-"),
    ('{{ toPrettyJson (dict "a" 1) }}', None, '{\n  "a": 1\n}'),
    ('{{ atoi "\uff12\uff10\uff10" }} {{ atoi "\u00b2" }} {{ atoi "-200" }}', None, "0 0 -200"),  # Go's digits only
]


@pytest.mark.parametrize(("source", "data", "expected"), GO_CASES + SPRIG_CASES)
def test_renders_as_go(source, data, expected):
    assert render(source, data) == expected


def test_a_group_reference_that_is_not_ascii_digits_renders():
    """A reference to "$²" made int() raise (str.isdigit() is true for it): the template failed. It names no
    group now (Go keeps "$²" as text: its group names take no "²"; a difference left alone)."""
    assert render('{{ regexReplaceAll "a" "xay" "$\u00b2" }}') == "xy"


def test_json_as_go_encoding_json_writes_it():
    marshal = {"marshal": lambda v: __import__("lambdagate.config.gotemplate.values", fromlist=["to_json"]).to_json(v)}
    data = {"m": {"b": [1.0, "<a&b>", 1e-7, 1e21, 0.000001], "a": None, "c": {"z": True, "y": "\u2028\n"}}}
    assert render("{{ marshal .m }}", data, extra=marshal) == (
        '{"a":null,"b":[1,"\\u003ca\\u0026b\\u003e",1e-07,1e+21,0.000001],"c":{"y":"\\u2028\\n","z":true}}'
    )


def test_later_definitions_replace_earlier_ones_unless_empty():
    source = '{{ define "T" }}first{{ end }}{{ template "T" }}'
    assert render(source, None, other_tmpl='{{ define "T" }}second{{ end }}') == "second"
    assert render(source, None, other_tmpl='{{ define "T" }}{{ end }}') == "first"


def test_templates_from_other_files_run_by_file_name():
    assert render('{{ template "ep.tmpl" .x }}', {"x": {"p": "/a"}}, ep_tmpl="[{{ .p }}]") == "[/a]"


ERRORS = [
    (
        "{{ .a.b }}",
        {},
        'template: main.tmpl:1:4: executing "main.tmpl" at <.a.b>: nil pointer evaluating interface {}.b',
    ),
    ("{{ .a.b }}", {"a": [1]}, "can't evaluate field b in type []interface {}"),
    ("{{ eq .a 1 }}", {"a": 1.0}, "error calling eq: incompatible types for comparison"),
    ("{{ lt true false }}", None, "error calling lt: invalid type for comparison"),
    ("line one\n  {{ nope }}", None, 'template: main.tmpl:2:6: function "nope" not defined'),
    ("{{ if 1 }}", None, "unexpected EOF in if"),
    ("{{ end }}", None, "template: main.tmpl:1:4: unexpected {{end}}"),
    ("{{ if 1 }}{{ else }}{{ else }}{{ end }}", None, "expected end; found {{else}}"),
    ("{{ break }}", None, "{{break}} outside {{range}}"),
    ("{{ .a", None, "unclosed action"),
    ("{{ /* x }}", None, "unexpected '/' in command"),
    ("{{/* x */ }}", None, "comment ends before closing delimiter"),
    (
        'x\n\n  {{ template "zz" }}',
        None,
        'template: main.tmpl:3:3: executing "main.tmpl" at <template "zz">: no such template "zz"',
    ),
    ("{{ index .l 5 }}", {"l": [1]}, "error calling index: index out of range: 5"),
    ("{{ $u }}", None, "undefined variable: $u"),
    ('{{ "a" | 3 }}', None, "non executable command in pipeline stage 2"),
    ("{{ .a 1 }}", {"a": 1}, "can't give argument to non-function a"),
    ("{{ range .s }}{{ end }}", {"s": "text"}, "range can't iterate over text"),
    ("{{ div 1 0 }}", None, "error calling div: integer divide by zero"),
    ("{{ (1 }}", None, "unclosed left paren"),
]


@pytest.mark.parametrize(("source", "data", "message"), ERRORS)
def test_errors_say_where_and_what(source, data, message):
    with pytest.raises(TemplateError) as caught:
        render(source, data)
    assert message in str(caught.value)


def test_rendering_is_bounded():
    recursive = '{{ define "r" }}x{{ template "r" }}{{ end }}{{ template "r" }}'
    with pytest.raises(TemplateError, match=r"exceeded maximum template depth \(64\)"):
        render(recursive)
    with pytest.raises(TemplateError, match="output exceeds 1000 bytes"):
        render("{{ range 2000 }}x{{ end }}", limits=Limits(max_output_bytes=1000))
    with pytest.raises(TemplateError, match="more than 5000 steps"):
        render("{{ range 100 }}{{ range 100 }}{{ end }}{{ end }}", limits=Limits(max_steps=5000))
    with pytest.raises(TemplateError, match="more than the 100000 items"):
        render("{{ until 100000000 }}")
    with pytest.raises(TemplateError, match="more than"):
        render("{{ range 1000000000000 }}{{ end }}")


def test_what_functions_build_is_bounded_too():
    doubling = "{{ $a := list 1 2 3 4 5 6 7 8 }}{{ range until 16 }}{{ $a = concat $a $a }}{{ end }}{{ len $a }}"
    with pytest.raises(TemplateError, match="concat made more than 100000 items"):
        render(doubling)
    with pytest.raises(TemplateError, match="print made a string longer than"):
        render('{{ $s := "ab" }}{{ range until 40 }}{{ $s = print $s $s }}{{ end }}')
    with pytest.raises(TemplateError, match="more than 2000000 steps"):  # each append copies the list
        render("{{ $x := list }}{{ range until 60000 }}{{ $x = append $x 1 }}{{ end }}")
    with pytest.raises(TemplateError, match="more than the 100000 items"):
        render("{{ untilStep 0 1000000000000 1 }}")
    assert len(render('{{ repeat 100000 "aaaaaaaaaa" }}')) == 1_000_000  # characters are not items
