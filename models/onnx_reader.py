"""Read an ONNX model file without the ``onnx`` or ``protobuf`` packages.

Neither has a wheel for 32-bit Raspberry Pi OS, yet the numpy backend must run the same files
there, and both backends read metadata the same way. So this module decodes the protobuf wire
format itself, keeping only what running a graph and describing a model need: the graph's nodes,
initializers, inputs and outputs, the opset imports and ``metadata_props``. Unknown fields are
skipped, as protobuf readers do, so files from newer exporters still load.

Field numbers are those of ``onnx/onnx.proto`` (IR version 10+; every field used here has kept
its number since IR version 3). The module imports no numpy: tensor payloads stay bytes or
``array`` values, and the numpy backend turns them into arrays.

A model file may come from anywhere, so decoding is bounded before it starts: nested messages
are views of the file's bytes (no copies), packed integers stay packed until a backend has
checked their count against the tensor's dims, and a file needing more than
:data:`MAX_FIELDS` fields, :data:`MAX_ITEMS` decoded messages or a tensor of more than
:data:`MAX_RANK` dims is refused with :class:`ModelTooLarge` before it costs more.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from models.errors import ModelError


class ModelFormatError(ModelError, ValueError):
    """The bytes are not a readable ONNX model (corrupt, truncated, or another kind of file)."""


class ModelTooLarge(ModelFormatError):
    """The file, or something in it, is over a limit: its size, a tensor's rank or element
    count, or the number of things the reader would have to decode."""


# Limits that bound the work and memory of reading any file, whatever it holds. Models for a
# device are far inside them: a network of a few thousand nodes decodes some 50,000 fields.
MAX_FIELDS = 1_000_000  # protobuf fields read, known or skipped (about 1 s of decoding)
MAX_ITEMS = 100_000  # messages decoded into objects: nodes, attributes, tensors, dims...
MAX_RANK = 32  # dims of a tensor: numpy 1.x holds 32 (2.x 64); ONNX models use a handful
MAX_ATTRIBUTE_VALUES = 65_536  # ints or floats in one attribute (axes, perm: a few each)


# TensorProto.DataType -> numpy dtype name, for the types numpy can hold exactly.
NUMPY_DTYPES: dict[int, str] = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
}

# TensorProto.DataType -> ONNX's own name, to describe the types numpy cannot hold.
ELEM_TYPE_NAMES: dict[int, str] = {
    0: "undefined",
    8: "string",
    14: "complex64",
    15: "complex128",
    16: "bfloat16",
    17: "float8e4m3fn",
    18: "float8e4m3fnuz",
    19: "float8e5m2",
    20: "float8e5m2fnuz",
    21: "uint4",
    22: "int4",
    23: "float4e2m1",
    24: "float8e8m0",
    25: "uint2",
    26: "int2",
    27: "float6e2m3",
    28: "float6e3m2",
}


def elem_type_name(elem_type: int) -> str:
    """The numpy dtype name of an ONNX element type, or ONNX's name when numpy has none."""
    return NUMPY_DTYPES.get(elem_type) or ELEM_TYPE_NAMES.get(elem_type, f"type {elem_type}")


# AttributeProto.AttributeType -> the kind names used by Attribute.kind.
_ATTRIBUTE_KINDS = {
    1: "float",
    2: "int",
    3: "string",
    4: "tensor",
    5: "graph",
    6: "floats",
    7: "ints",
    8: "strings",
    9: "tensors",
    10: "graphs",
    11: "sparse_tensor",
    12: "sparse_tensors",
    13: "type_proto",
    14: "type_protos",
}

# AttributeProto value field number -> kind, for files written before the type field existed.
_VALUE_FIELD_KINDS = {
    2: "float",
    3: "int",
    4: "string",
    5: "tensor",
    6: "graph",
    7: "floats",
    8: "ints",
    9: "strings",
    10: "tensors",
    11: "graphs",
    14: "type_proto",
    15: "type_protos",
    22: "sparse_tensor",
    23: "sparse_tensors",
}

_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


@dataclass(frozen=True)
class Tensor:
    """A TensorProto. Exactly one of the payload fields holds the data, as the writer chose."""

    name: str
    dims: tuple[int, ...]
    data_type: int
    raw_data: bytes | None  # None when the field is absent (an empty tensor may have b"")
    float_data: array[float]
    double_data: array[float]
    int32_data: Varints  # packed, decoded by the backend once their count is checked
    int64_data: Varints
    uint64_data: Varints
    string_count: int
    external: bool  # payload lives in another file (data_location or external_data set)
    segmented: bool  # only a segment of a larger tensor


@dataclass(frozen=True)
class Attribute:
    """An AttributeProto; ``kind`` says which value field is meant (``"int"``, ``"floats"``...)."""

    name: str
    kind: str
    f: float = 0.0
    i: int = 0
    s: bytes = b""
    t: Tensor | None = None
    floats: tuple[float, ...] = ()
    ints: tuple[int, ...] = ()
    strings: tuple[bytes, ...] = ()
    tensors: tuple[Tensor, ...] = ()


@dataclass(frozen=True)
class Node:
    """A NodeProto: one operator application. Empty input names mark omitted optional inputs."""

    op_type: str
    name: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: dict[str, Attribute]

    @property
    def label(self) -> str:
        """How error messages name the node: its op type and its name when it has one."""
        return f"{self.op_type} (node {self.name!r})" if self.name else self.op_type


@dataclass(frozen=True)
class ValueInfo:
    """A graph input or output: name, element type (0 for non-tensors) and shape.

    ``shape`` is None when the file gives none; a dimension is an int, a symbolic name
    (``"batch"``) or None when unknown.
    """

    name: str
    elem_type: int
    shape: tuple[int | str | None, ...] | None


@dataclass(frozen=True)
class Graph:
    """A GraphProto: nodes in file order, initializers, inputs and outputs."""

    name: str
    nodes: tuple[Node, ...]
    initializers: tuple[Tensor, ...]
    inputs: tuple[ValueInfo, ...]
    outputs: tuple[ValueInfo, ...]
    sparse_initializers: tuple[str, ...]  # names only: no backend here runs them


@dataclass(frozen=True)
class OnnxModel:
    """A ModelProto: the graph, the operator sets it was written against, and its metadata."""

    ir_version: int
    producer_name: str
    opset_imports: dict[str, int]  # domain ("" is the default ONNX domain) -> version
    graph: Graph
    metadata: dict[str, str]

    def opset(self, domain: str = "") -> int | None:
        """The imported version of ``domain`` ("" and "ai.onnx" both name the default one)."""
        if domain in ("", "ai.onnx"):
            return self.opset_imports.get("", self.opset_imports.get("ai.onnx"))
        return self.opset_imports.get(domain)


def parse_model(data: bytes | memoryview) -> OnnxModel:
    """Decode the bytes of an ``.onnx`` file; raise :class:`ModelFormatError` if not one, and
    :class:`ModelTooLarge` if it needs more than the reader's limits to decode."""
    return _Decoder().model(memoryview(data))


class _Decoder:
    """One file's decoding, with what is left of its budgets of fields and items."""

    def __init__(self) -> None:
        self.fields_left = MAX_FIELDS
        self.items_left = MAX_ITEMS

    def fields(self, buf: memoryview | list[memoryview], where: str) -> Iterator[_Field]:
        """The fields of one message, counted against the budgets.

        A list holds the parts of a message given more than once: protobuf merges them, as
        if concatenated, and so must this reader, or a second ``graph`` field would hide the
        first from every check while onnxruntime runs both.
        """
        self.items_left -= 1
        if self.items_left < 0:
            raise ModelTooLarge(
                f"{where}: more than {MAX_ITEMS:,} nodes, attributes, tensors and values "
                "to decode (not a model for a device?)"
            )
        for part in buf if isinstance(buf, list) else [buf]:
            for field in _fields(part, where):
                self.fields_left -= 1
                if self.fields_left < 0:
                    raise ModelTooLarge(
                        f"{where}: more than {MAX_FIELDS:,} protobuf fields (not a model for "
                        "a device?)"
                    )
                yield field

    def model(self, buf: memoryview) -> OnnxModel:
        ir_version = 0
        producer = ""
        opsets: dict[str, int] = {}
        graph_parts: list[memoryview] = []
        metadata: dict[str, str] = {}
        for field in self.fields(buf, "ModelProto"):
            if field.number == 1:
                ir_version = field.int64()
            elif field.number == 2:
                producer = field.text()
            elif field.number == 7:
                graph_parts.append(field.message())
            elif field.number == 8:
                domain, version = self.opset_import(field.message())
                opsets[domain] = version
            elif field.number == 14:
                key, value = self.string_pair(field.message(), "metadata_props")
                metadata[key] = value
        graph = self.graph(graph_parts, "graph") if graph_parts else None
        if graph is None or ir_version < 1:
            raise ModelFormatError(
                "not an ONNX model: no graph and IR version found (is the file truncated, or "
                "another kind of file?)"
            )
        return OnnxModel(ir_version, producer, opsets, graph, metadata)

    # --- message decoders, one per protobuf message used ---------------------------------------

    def graph(self, buf: list[memoryview], where: str) -> Graph:
        name = ""
        nodes: list[Node] = []
        initializers: list[Tensor] = []
        inputs: list[ValueInfo] = []
        outputs: list[ValueInfo] = []
        sparse: list[str] = []
        for field in self.fields(buf, where):
            if field.number == 1:
                nodes.append(self.node(field.message(), f"{where}.node[{len(nodes)}]"))
            elif field.number == 2:
                name = field.text()
            elif field.number == 5:
                initializers.append(self.tensor(field.message(), f"{where}.initializer"))
            elif field.number == 11:
                inputs.append(self.value_info(field.message(), f"{where}.input"))
            elif field.number == 12:
                outputs.append(self.value_info(field.message(), f"{where}.output"))
            elif field.number == 15:
                sparse.append(
                    self.sparse_tensor_name(field.message(), f"{where}.sparse_initializer")
                )
        return Graph(
            name, tuple(nodes), tuple(initializers), tuple(inputs), tuple(outputs), tuple(sparse)
        )

    def node(self, buf: memoryview, where: str) -> Node:
        inputs: list[str] = []
        outputs: list[str] = []
        name = op_type = domain = ""
        attributes: dict[str, Attribute] = {}
        for field in self.fields(buf, where):
            if field.number == 1:
                inputs.append(field.text())
            elif field.number == 2:
                outputs.append(field.text())
            elif field.number == 3:
                name = field.text()
            elif field.number == 4:
                op_type = field.text()
            elif field.number == 5:
                attribute = self.attribute(field.message(), f"{where}.attribute")
                attributes[attribute.name] = attribute
            elif field.number == 7:
                domain = field.text()
        return Node(op_type, name, domain, tuple(inputs), tuple(outputs), attributes)

    def attribute(self, buf: memoryview, where: str) -> Attribute:
        name = ""
        declared: str | None = None
        present: list[str] = []
        f, i, s = 0.0, 0, b""
        tensor_parts: list[memoryview] = []
        floats: array[float] = array("f")
        ints = Varints()
        strings: list[bytes] = []
        tensors: list[Tensor] = []
        for field in self.fields(buf, where):
            number = field.number
            if number == 1:
                name = field.text()
            elif number == 20:
                declared = _ATTRIBUTE_KINDS.get(field.int64(), "undefined")
            elif number == 2:
                f = field.float32()
            elif number == 3:
                i = field.int64()
            elif number == 4:
                s = bytes(field.message())
            elif number == 5:
                tensor_parts.append(field.message())
            elif number == 7:
                floats.extend(field.float32s())
            elif number == 8:
                ints.add(field)
            if max(len(floats), ints.count) > MAX_ATTRIBUTE_VALUES:
                raise ModelTooLarge(
                    f"{where} {name!r}: more than {MAX_ATTRIBUTE_VALUES:,} values in one attribute"
                )
            elif number == 9:
                self.items_left -= 1  # each string is an object of its own
                strings.append(bytes(field.message()))
            elif number == 10:
                tensors.append(self.tensor(field.message(), f"{where} {name!r}"))
            # Subgraphs (If, Loop, Scan), sparse tensors and types are kept as a kind only.
            if number in _VALUE_FIELD_KINDS:
                present.append(_VALUE_FIELD_KINDS[number])
        # IR version 1 files carry no type field: the value field present says what it is.
        kind = declared or (present[0] if present else "undefined")
        t = self.tensor(tensor_parts, f"{where} {name!r}") if tensor_parts else None
        return Attribute(
            name,
            kind,
            f,
            i,
            s,
            t,
            tuple(floats),
            tuple(ints.signed64()),
            tuple(strings),
            tuple(tensors),
        )

    def tensor(self, buf: memoryview | list[memoryview], where: str) -> Tensor:
        name = ""
        dims = Varints()
        data_type = 0
        raw: bytes | None = None
        floats: array[float] = array("f")
        doubles: array[float] = array("d")
        int32s, int64s, uint64s = Varints(), Varints(), Varints()
        strings = 0
        external = segmented = False
        for field in self.fields(buf, where):
            number = field.number
            if number == 1:
                dims.add(field)
                if dims.count > MAX_RANK:
                    raise ModelTooLarge(f"{where}: a tensor of more than {MAX_RANK} dims")
            elif number == 2:
                data_type = field.int64()
            elif number == 3:
                segmented = True
            elif number == 4:
                floats.extend(field.float32s())
            elif number == 5:
                int32s.add(field)  # int32 varints are sign-extended to 64 bits
            elif number == 6:
                strings += 1
            elif number == 7:
                int64s.add(field)
            elif number == 8:
                name = field.text()
            elif number == 9:
                raw = bytes(field.message())
            elif number == 10:
                doubles.extend(field.float64s())
            elif number == 11:
                uint64s.add(field)
            elif number == 13:
                external = True
            elif number == 14:
                external = external or field.int64() == _EXTERNAL
        return Tensor(
            name,
            tuple(dims.signed64()),
            data_type,
            raw,
            floats,
            doubles,
            int32s,
            int64s,
            uint64s,
            strings,
            external,
            segmented,
        )

    def sparse_tensor_name(self, buf: memoryview, where: str) -> str:
        # SparseTensorProto.values (1) is a TensorProto whose name is the initializer's name.
        for field in self.fields(buf, where):
            if field.number == 1:
                return self.tensor(field.message(), where).name
        return ""

    def value_info(self, buf: memoryview, where: str) -> ValueInfo:
        name = ""
        elem_type = 0
        shape: tuple[int | str | None, ...] | None = None
        type_parts: list[memoryview] = []
        for field in self.fields(buf, where):
            if field.number == 1:
                name = field.text()
            elif field.number == 2:
                type_parts.append(field.message())
        if type_parts:
            tensor_parts = [
                type_field.message()
                for type_field in self.fields(type_parts, f"{where} {name!r} type")
                if type_field.number == 1  # TypeProto.tensor_type; other kinds stay type 0
            ]
            if tensor_parts:
                elem_type, shape = self.tensor_type(tensor_parts, where)
        return ValueInfo(name, elem_type, shape)

    def tensor_type(
        self, buf: list[memoryview], where: str
    ) -> tuple[int, tuple[int | str | None, ...] | None]:
        elem_type = 0
        shape_parts: list[memoryview] = []
        for field in self.fields(buf, where):
            if field.number == 1:
                elem_type = field.int64()
            elif field.number == 2:
                shape_parts.append(field.message())
        if not shape_parts:
            return elem_type, None
        dims: list[int | str | None] = []
        for dim_field in self.fields(shape_parts, where):
            if dim_field.number == 1:
                dims.append(self.dimension(dim_field.message(), where))
                if len(dims) > MAX_RANK:
                    raise ModelTooLarge(f"{where}: a shape of more than {MAX_RANK} dims")
        return elem_type, tuple(dims)

    def dimension(self, buf: memoryview, where: str) -> int | str | None:
        value: int | str | None = None
        for field in self.fields(buf, where):
            if field.number == 1:
                value = field.int64()
            elif field.number == 2:
                value = field.text() or None
        return value

    def opset_import(self, buf: memoryview) -> tuple[str, int]:
        domain, version = "", 0
        for field in self.fields(buf, "opset_import"):
            if field.number == 1:
                domain = field.text()
            elif field.number == 2:
                version = field.int64()
        return domain, version

    def string_pair(self, buf: memoryview, where: str) -> tuple[str, str]:
        key = value = ""
        for field in self.fields(buf, where):
            if field.number == 1:
                key = field.text()
            elif field.number == 2:
                value = field.text()
        return key, value


# --- the wire format ----------------------------------------------------------------------------

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5
_WIRE_NAMES = {
    _VARINT: "varint",
    _FIXED64: "64-bit",
    _LENGTH_DELIMITED: "bytes",
    _FIXED32: "32-bit",
}
_UINT64 = (1 << 64) - 1
_LOW_BYTES = bytes(range(0x80))  # the last byte of each varint is one of these


class _Field(NamedTuple):
    """One decoded field: its number, wire type and payload (int for varints, else a view)."""

    number: int
    wire: int
    payload: int | memoryview
    where: str

    def _expect(self, wire: int) -> None:
        if self.wire != wire:
            raise ModelFormatError(
                f"{self.where}: field {self.number} has wire type {_WIRE_NAMES[self.wire]}, "
                f"expected {_WIRE_NAMES[wire]} (not an ONNX file?)"
            )

    def int64(self) -> int:
        self._expect(_VARINT)
        assert isinstance(self.payload, int)
        return _signed64(self.payload)

    def message(self) -> memoryview:
        """A length-delimited payload: a nested message, a bytes or a string field."""
        self._expect(_LENGTH_DELIMITED)
        assert isinstance(self.payload, memoryview)
        return self.payload

    def text(self) -> str:
        try:
            return str(self.message(), "utf-8")
        except UnicodeDecodeError as exc:
            raise ModelFormatError(f"{self.where}: field {self.number} is not UTF-8") from exc

    def float32(self) -> float:
        self._expect(_FIXED32)
        assert isinstance(self.payload, memoryview)
        value: float = struct.unpack("<f", self.payload)[0]
        return value

    # Repeated numeric fields come packed (one length-delimited run) or one value per field.

    def float32s(self) -> array[float]:
        return self._fixed("f", 4, _FIXED32)

    def float64s(self) -> array[float]:
        return self._fixed("d", 8, _FIXED64)

    def _fixed(self, code: str, size: int, single_wire: int) -> array[float]:
        if self.wire != single_wire:
            self._expect(_LENGTH_DELIMITED)
        assert isinstance(self.payload, memoryview)
        if len(self.payload) % size:
            raise ModelFormatError(
                f"{self.where}: field {self.number} holds {len(self.payload)} bytes, "
                f"not a whole number of {size}-byte values"
            )
        values: array[float] = array(code)
        values.frombytes(self.payload)  # array(code, view) would take each byte as a value
        if sys.byteorder == "big":  # protobuf fixed-width values are little-endian
            values.byteswap()
        return values


class Varints:
    """A repeated integer field kept as its varint bytes: counting the values is cheap (one
    pass in C), decoding them costs a Python object each, so a reader checks the count
    against what it expects before it decodes. ``packed`` holds the concatenated varints."""

    def __init__(self) -> None:
        self._chunks: list[bytes | memoryview] = []  # views of the file: nothing copied yet
        self.count = 0

    def add(self, field: _Field) -> None:
        """Take one field's values: a packed run, or a single varint."""
        chunk: bytes | memoryview
        if field.wire == _VARINT:
            assert isinstance(field.payload, int)
            chunk = _encode_varint(field.payload & _UINT64)
        else:
            chunk = field.message()
            if len(chunk) and chunk[-1] >= 0x80:
                raise ModelFormatError(
                    f"{field.where}: field {field.number} ends inside a number (truncated?)"
                )
        self._chunks.append(chunk)
        self.count += len(chunk) - len(bytes(chunk).translate(None, _LOW_BYTES))

    @property
    def packed(self) -> bytes:
        return b"".join(self._chunks)

    def uint64s(self) -> list[int]:
        """The values as unsigned 64-bit integers (decoded in Python: check ``count`` first)."""
        buf, values, pos = self.packed, [], 0
        while pos < len(buf):
            value, pos = _varint(buf, pos, "packed integers")
            values.append(value & _UINT64)
        return values

    def signed64(self) -> list[int]:
        return [_signed64(v) for v in self.uint64s()]

    def __len__(self) -> int:
        return self.count


def _fields(buf: memoryview, where: str) -> Iterator[_Field]:
    """Yield the fields of one serialized message in order; raise on truncation or garbage."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos, where)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ModelFormatError(f"{where}: field number 0 at byte {pos} (not an ONNX file?)")
        payload: int | memoryview
        if wire == _VARINT:
            payload, pos = _varint(buf, pos, where)
        elif wire in (_FIXED64, _FIXED32, _LENGTH_DELIMITED):
            if wire == _LENGTH_DELIMITED:
                size, pos = _varint(buf, pos, where)
            else:
                size = 8 if wire == _FIXED64 else 4
            if pos + size > end:
                raise ModelFormatError(
                    f"{where}: field {number} needs {size} bytes, {end - pos} left (truncated?)"
                )
            payload, pos = buf[pos : pos + size], pos + size
        else:
            raise ModelFormatError(
                f"{where}: wire type {wire} in field {number} is not used by ONNX "
                "(not an ONNX file?)"
            )
        yield _Field(number, wire, payload, where)


def _varint(buf: bytes | memoryview, pos: int, where: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ModelFormatError(f"{where}: a number runs past the end of the data (truncated?)")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ModelFormatError(f"{where}: a number is longer than 10 bytes (not an ONNX file?)")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _signed64(value: int) -> int:
    value &= _UINT64
    return value - (1 << 64) if value >= 1 << 63 else value
