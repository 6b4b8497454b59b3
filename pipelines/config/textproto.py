"""Protobuf text format read into a tree that remembers where each field was, and written back.

protobuf's own parser (used for label maps) stops at the first problem and keeps no
positions once it has parsed; a ``pipeline.config`` wants every problem reported at
once with its line, and ``odlite config`` rewrites files people have commented. So
this reader keeps the raw text of each value, the comment lines above each field and
the file's header, and knows nothing of any schema: ``pipeline_config`` judges the tree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipelines.errors import OdliteError

INDENT = "  "


@dataclass
class Scalar:
    """One value as written: ``kind`` is number, string or ident; strings also carry their decoded text."""

    kind: str
    raw: str
    line: int = 0
    col: int = 0
    text: str | None = None


@dataclass
class Message:
    """A ``{ ... }`` block (or the whole file); ``line`` is where its field name was, 0 when made in code."""

    fields: list[Field] = field(default_factory=list)
    line: int = 0
    col: int = 0
    tail_comments: list[str] = field(default_factory=list)
    open_comment: str | None = None

    def all(self, name: str) -> list[Field]:
        return [f for f in self.fields if f.name == name]

    def first(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


@dataclass
class Field:
    """One occurrence of ``name: value``, ``name: [a, b]`` or ``name { ... }``.

    ``comments`` are the comment lines above it ("" for a blank line between them).
    """

    name: str
    message: Message | None = None
    scalars: list[Scalar] = field(default_factory=list)
    list_form: bool = False
    line: int = 0
    col: int = 0
    comments: list[str] = field(default_factory=list)
    blank_before: bool = False
    trailing: str | None = None


@dataclass
class _Token:
    kind: str  # number, string, ident, symbol, eof
    text: str
    line: int
    col: int
    comments: list[str] = field(default_factory=list)
    blank_before: bool = False
    trailing: str | None = None


_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\f\v]+)
    |(?P<newline>\n)
    |(?P<comment>\#[^\n]*)
    |(?P<number>-?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[fF]?)(?![\w.]))
    |(?P<ident>-?[A-Za-z_]\w*)
    |(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    |(?P<symbol>[{}<>\[\]:,;])
    """,
    re.VERBOSE,
)

_SIMPLE_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "?": "?",
}


def _syntax_error(source: str, line: int, col: int, reason: str) -> OdliteError:
    return OdliteError.at(source, reason, f"{line}:{col}")


def _tokenize(text: str, source: str) -> list[_Token]:
    tokens: list[_Token] = []
    comments: list[str] = []
    blank = False
    line, line_start, pos = 1, 0, 0
    line_has_content = False
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        col = pos - line_start + 1
        if match is None:
            char = text[pos]
            if char in "\"'":
                raise _syntax_error(source, line, col, "unterminated string (strings end on the line they start)")
            raise _syntax_error(source, line, col, f"unexpected character {char!r}")
        kind, value = match.lastgroup, match.group()
        pos = match.end()
        if kind == "newline":
            if not line_has_content:
                if comments and comments[-1] != "":
                    comments.append("")
                elif not comments and tokens:
                    blank = True
            line, line_start, line_has_content = line + 1, pos, False
            continue
        if kind == "space":
            continue
        if kind == "comment":
            if tokens and tokens[-1].line == line:
                tokens[-1].trailing = value.rstrip()
            else:
                comments.append(value.rstrip())
            line_has_content = True
            continue
        tokens.append(_Token(kind, value, line, col, comments, blank))
        comments, blank, line_has_content = [], False, True
    while comments and comments[-1] == "":
        comments.pop()
    tokens.append(_Token("eof", "", line, pos - line_start + 1, comments, blank))
    return tokens


def decode_string(raw: str, source: str = "<text>", line: int = 0, col: int = 0) -> str:
    """The text of one quoted string token, C escapes resolved, bytes read as UTF-8."""
    body = raw[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out += char.encode("utf-8")
            i += 1
            continue
        escape = body[i + 1]
        if escape in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[escape].encode("utf-8")
            i += 2
        elif escape in "01234567":
            digits = re.match(r"[0-7]{1,3}", body[i + 1 :]).group()
            out.append(int(digits, 8) & 0xFF)
            i += 1 + len(digits)
        elif escape in "xX":
            digits = re.match(r"[0-9a-fA-F]{0,2}", body[i + 2 :]).group()
            if not digits:
                raise _syntax_error(source, line, col + i + 1, "\\x needs hex digits")
            out.append(int(digits, 16))
            i += 2 + len(digits)
        elif escape in "uU":
            size = 4 if escape == "u" else 8
            digits = body[i + 2 : i + 2 + size]
            if not re.fullmatch(rf"[0-9a-fA-F]{{{size}}}", digits):
                raise _syntax_error(source, line, col + i + 1, f"\\{escape} needs {size} hex digits")
            out += chr(int(digits, 16)).encode("utf-8", "surrogatepass")
            i += 2 + size
        else:
            raise _syntax_error(source, line, col + i + 1, f"unknown escape '\\{escape}' in string")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise _syntax_error(source, line, col, "string is not valid UTF-8") from None


def quote(text: str) -> str:
    """``text`` as a double-quoted string token."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\{ord(char):03o}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


class _Parser:
    def __init__(self, tokens: list[_Token], source: str):
        self.tokens = tokens
        self.source = source
        self.pos = 0

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        if token.kind != "eof":
            self.pos += 1
        return token

    def accept(self, *symbols: str) -> _Token | None:
        token = self.peek()
        if token.kind == "symbol" and token.text in symbols:
            return self.take()
        return None

    def error(self, token: _Token, reason: str) -> OdliteError:
        return _syntax_error(self.source, token.line, token.col, reason)

    @staticmethod
    def describe(token: _Token) -> str:
        return "end of file" if token.kind == "eof" else repr(token.text)

    def parse_document(self) -> Message:
        root = Message(line=0, col=0)
        self.parse_fields(root, None)
        root.tail_comments = list(self.peek().comments)
        return root

    def parse_fields(self, message: Message, closer: _Token | None) -> None:
        end = {"{": "}", "<": ">"}.get(closer.text) if closer else None
        while True:
            token = self.peek()
            if token.kind == "eof":
                if closer is not None:
                    raise self.error(
                        token, f"end of file inside the '{closer.text}' opened on line {closer.line}:{closer.col}"
                    )
                return
            if token.kind == "symbol" and token.text in "}>":
                if token.text != end:
                    raise self.error(token, f"unexpected {token.text!r}" + (f", expected {end!r}" if end else ""))
                return
            message.fields.extend(self.parse_field())

    def parse_field(self) -> list[Field]:
        name = self.take()
        if name.kind != "ident" or name.text.startswith("-"):
            hint = " (extension and Any fields are not supported)" if name.text == "[" else ""
            raise self.error(name, f"expected a field name, got {self.describe(name)}{hint}")
        colon = self.accept(":")
        made = Field(name.text, line=name.line, col=name.col, comments=name.comments, blank_before=name.blank_before)
        token = self.peek()
        if token.kind == "symbol" and token.text in "{<":
            made.message = self.parse_block(name)
            made.trailing = self.tokens[self.pos - 1].trailing
            fields = [made]
        elif token.kind == "symbol" and token.text == "[":
            if colon is None:
                raise self.error(token, f"expected ':' after '{name.text}'")
            fields = self.parse_list(made)
        else:
            if colon is None:
                raise self.error(token, f"expected ':' or '{{' after '{name.text}', got {self.describe(token)}")
            made.scalars = [self.parse_scalar()]
            made.trailing = self.tokens[self.pos - 1].trailing
            fields = [made]
        separator = self.accept(",", ";")
        if separator is not None and separator.trailing:
            fields[-1].trailing = separator.trailing
        return fields

    def parse_block(self, name: _Token) -> Message:
        opener = self.take()
        block = Message(line=name.line, col=name.col, open_comment=opener.trailing)
        self.parse_fields(block, opener)
        closer = self.take()
        block.tail_comments = list(closer.comments)
        while block.tail_comments and block.tail_comments[-1] == "":
            block.tail_comments.pop()
        return block

    def parse_list(self, made: Field) -> list[Field]:
        self.take()  # [
        scalars: list[Scalar] = []
        blocks: list[Message] = []
        while not self.accept("]"):
            token = self.peek()
            if token.kind == "symbol" and token.text in "{<":
                blocks.append(self.parse_block(token))
            else:
                scalars.append(self.parse_scalar())
            if self.accept(","):
                continue
            if not (self.peek().kind == "symbol" and self.peek().text == "]"):
                raise self.error(self.peek(), f"expected ',' or ']' in the list, got {self.describe(self.peek())}")
        if blocks and scalars:
            raise self.error(self.tokens[self.pos - 1], f"'{made.name}' mixes values and blocks in one list")
        if blocks:  # name: [{...}, {...}] is the same as repeating the block
            return [
                Field(made.name, message=b, line=b.line, col=b.col, comments=made.comments if i == 0 else [])
                for i, b in enumerate(blocks)
            ]
        made.scalars, made.list_form = scalars, True
        made.trailing = self.tokens[self.pos - 1].trailing
        return [made]

    def parse_scalar(self) -> Scalar:
        token = self.take()
        if token.kind in ("number", "ident"):
            return Scalar(token.kind, token.text, token.line, token.col)
        if token.kind == "string":
            raws, texts = [token.text], [decode_string(token.text, self.source, token.line, token.col)]
            while self.peek().kind == "string":  # "a" "b" is "ab", as in C
                more = self.take()
                raws.append(more.text)
                texts.append(decode_string(more.text, self.source, more.line, more.col))
            return Scalar("string", " ".join(raws), token.line, token.col, "".join(texts))
        raise self.error(token, f"expected a value, got {self.describe(token)}")


def parse(text: str, source: str = "<text>") -> Message:
    """The tree of ``text``; a syntax error raises ``OdliteError`` naming ``source:line:col``."""
    return _Parser(_tokenize(text, source), source).parse_document()


def parse_scalar(text: str, source: str = "<value>") -> Scalar:
    """One value token (``0.5``, ``RELU_6``, ``'a'``), for values given on the command line."""
    tokens = _tokenize(text, source)
    parser = _Parser(tokens, source)
    scalar = parser.parse_scalar()
    if parser.peek().kind != "eof":
        raise parser.error(parser.peek(), f"unexpected {parser.describe(parser.peek())} after the value")
    return scalar


def parse_scalar_list(text: str, source: str = "<value>") -> list[Scalar]:
    """``[a, b, c]``: the list form of a repeated field's values."""
    tokens = _tokenize("x: " + text, source)
    parser = _Parser(tokens, source)
    fields = parser.parse_field()
    if parser.peek().kind != "eof" or len(fields) != 1 or fields[0].message is not None:
        raise _syntax_error(source, 1, 1, "expected a list of values like [1.0, 2.0]")
    return fields[0].scalars


def _comment_lines(comments: list[str], pad: str) -> list[str]:
    return [f"{pad}{c}" if c else "" for c in comments]


def _format_message(message: Message, depth: int, out: list[str]) -> None:
    pad = INDENT * depth
    for index, item in enumerate(message.fields):
        if item.blank_before and out and out[-1] != "" and (index or depth == 0):
            out.append("")
        out.extend(_comment_lines(item.comments, pad))
        trailing = f"  {item.trailing}" if item.trailing else ""
        if item.message is not None:
            opener = f"  {item.message.open_comment}" if item.message.open_comment else ""
            out.append(f"{pad}{item.name} {{{opener}")
            _format_message(item.message, depth + 1, out)
            out.append(f"{pad}}}{trailing}")
        elif item.list_form:
            out.append(f"{pad}{item.name}: [{', '.join(s.raw for s in item.scalars)}]{trailing}")
        else:
            out.append(f"{pad}{item.name}: {item.scalars[0].raw}{trailing}")
    out.extend(_comment_lines(message.tail_comments, pad))


def to_text(root: Message) -> str:
    """The tree as text: two-space indentation, ``name {`` blocks, comments where they were."""
    out: list[str] = []
    _format_message(root, 0, out)
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"
