"""Read an ONNX model file without the ``onnx`` or ``protobuf`` packages.

Neither has a wheel for 32-bit Raspberry Pi OS, yet the numpy backend must run the same files
there, and both backends read metadata the same way. So this module decodes the protobuf wire
format itself, keeping only what running a graph and describing a model need: the graph's nodes,
initializers, inputs and outputs, the opset imports and ``metadata_props``. Unknown fields are
skipped, as protobuf readers do, so files from newer exporters still load.

Field numbers are those of ``onnx/onnx.proto`` (IR version 10+; every field used here has kept
its number since IR version 3). The module imports no numpy: tensor payloads stay bytes or
``array`` values, and the numpy backend turns them into arrays.
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
    int32_data: tuple[int, ...]
    int64_data: tuple[int, ...]
    uint64_data: tuple[int, ...]
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


def parse_model(data: bytes) -> OnnxModel:
    """Decode the bytes of an ``.onnx`` file; raise :class:`ModelFormatError` if not one."""
    ir_version = 0
    producer = ""
    opsets: dict[str, int] = {}
    graph: Graph | None = None
    metadata: dict[str, str] = {}
    for field in _fields(bytes(data), "ModelProto"):
        if field.number == 1:
            ir_version = field.int64()
        elif field.number == 2:
            producer = field.text()
        elif field.number == 7:
            graph = _graph(field.message(), "graph")
        elif field.number == 8:
            domain, version = _opset_import(field.message())
            opsets[domain] = version
        elif field.number == 14:
            key, value = _string_pair(field.message(), "metadata_props")
            metadata[key] = value
    if graph is None or ir_version < 1:
        raise ModelFormatError(
            "not an ONNX model: no graph and IR version found (is the file truncated, or "
            "another kind of file?)"
        )
    return OnnxModel(ir_version, producer, opsets, graph, metadata)


# --- message decoders, one per protobuf message used -------------------------------------------


def _graph(buf: bytes, where: str) -> Graph:
    name = ""
    nodes: list[Node] = []
    initializers: list[Tensor] = []
    inputs: list[ValueInfo] = []
    outputs: list[ValueInfo] = []
    sparse: list[str] = []
    for field in _fields(buf, where):
        if field.number == 1:
            nodes.append(_node(field.message(), f"{where}.node[{len(nodes)}]"))
        elif field.number == 2:
            name = field.text()
        elif field.number == 5:
            initializers.append(_tensor(field.message(), f"{where}.initializer"))
        elif field.number == 11:
            inputs.append(_value_info(field.message(), f"{where}.input"))
        elif field.number == 12:
            outputs.append(_value_info(field.message(), f"{where}.output"))
        elif field.number == 15:
            sparse.append(_sparse_tensor_name(field.message(), f"{where}.sparse_initializer"))
    return Graph(
        name, tuple(nodes), tuple(initializers), tuple(inputs), tuple(outputs), tuple(sparse)
    )


def _node(buf: bytes, where: str) -> Node:
    inputs: list[str] = []
    outputs: list[str] = []
    name = op_type = domain = ""
    attributes: dict[str, Attribute] = {}
    for field in _fields(buf, where):
        if field.number == 1:
            inputs.append(field.text())
        elif field.number == 2:
            outputs.append(field.text())
        elif field.number == 3:
            name = field.text()
        elif field.number == 4:
            op_type = field.text()
        elif field.number == 5:
            attribute = _attribute(field.message(), f"{where}.attribute")
            attributes[attribute.name] = attribute
        elif field.number == 7:
            domain = field.text()
    return Node(op_type, name, domain, tuple(inputs), tuple(outputs), attributes)


def _attribute(buf: bytes, where: str) -> Attribute:
    name = ""
    declared: str | None = None
    present: list[str] = []
    f, i, s, t = 0.0, 0, b"", None
    floats: list[float] = []
    ints: list[int] = []
    strings: list[bytes] = []
    tensors: list[Tensor] = []
    for field in _fields(buf, where):
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
            s = field.message()
        elif number == 5:
            t = _tensor(field.message(), f"{where} {name!r}")
        elif number == 7:
            floats.extend(field.float32s())
        elif number == 8:
            ints.extend(field.int64s())
        elif number == 9:
            strings.append(field.message())
        elif number == 10:
            tensors.append(_tensor(field.message(), f"{where} {name!r}"))
        # Subgraphs (If, Loop, Scan), sparse tensors and types are kept as a kind only.
        if number in _VALUE_FIELD_KINDS:
            present.append(_VALUE_FIELD_KINDS[number])
    # IR version 1 files carry no type field: the value field present says what it is.
    kind = declared or (present[0] if present else "undefined")
    return Attribute(
        name, kind, f, i, s, t, tuple(floats), tuple(ints), tuple(strings), tuple(tensors)
    )


def _tensor(buf: bytes, where: str) -> Tensor:
    name = ""
    dims: list[int] = []
    data_type = 0
    raw: bytes | None = None
    floats: array[float] = array("f")
    doubles: array[float] = array("d")
    int32s: list[int] = []
    int64s: list[int] = []
    uint64s: list[int] = []
    strings = 0
    external = segmented = False
    for field in _fields(buf, where):
        number = field.number
        if number == 1:
            dims.extend(field.int64s())
        elif number == 2:
            data_type = field.int64()
        elif number == 3:
            segmented = True
        elif number == 4:
            floats.extend(field.float32s())
        elif number == 5:
            int32s.extend(field.int64s())  # int32 varints are sign-extended to 64 bits
        elif number == 6:
            strings += 1
        elif number == 7:
            int64s.extend(field.int64s())
        elif number == 8:
            name = field.text()
        elif number == 9:
            raw = field.message()
        elif number == 10:
            doubles.extend(field.float64s())
        elif number == 11:
            uint64s.extend(field.uint64s())
        elif number == 13:
            external = True
        elif number == 14:
            external = external or field.int64() == _EXTERNAL
    return Tensor(
        name,
        tuple(dims),
        data_type,
        raw,
        floats,
        doubles,
        tuple(int32s),
        tuple(int64s),
        tuple(uint64s),
        strings,
        external,
        segmented,
    )


def _sparse_tensor_name(buf: bytes, where: str) -> str:
    # SparseTensorProto.values (1) is a TensorProto whose name is the initializer's name.
    for field in _fields(buf, where):
        if field.number == 1:
            return _tensor(field.message(), where).name
    return ""


def _value_info(buf: bytes, where: str) -> ValueInfo:
    name = ""
    elem_type = 0
    shape: tuple[int | str | None, ...] | None = None
    for field in _fields(buf, where):
        if field.number == 1:
            name = field.text()
        elif field.number == 2:
            for type_field in _fields(field.message(), f"{where} {name!r} type"):
                if type_field.number == 1:  # TypeProto.tensor_type; other kinds stay type 0
                    elem_type, shape = _tensor_type(type_field.message(), where)
    return ValueInfo(name, elem_type, shape)


def _tensor_type(buf: bytes, where: str) -> tuple[int, tuple[int | str | None, ...] | None]:
    elem_type = 0
    shape: tuple[int | str | None, ...] | None = None
    for field in _fields(buf, where):
        if field.number == 1:
            elem_type = field.int64()
        elif field.number == 2:
            dims: list[int | str | None] = []
            for dim_field in _fields(field.message(), where):
                if dim_field.number == 1:
                    dims.append(_dimension(dim_field.message(), where))
            shape = tuple(dims)
    return elem_type, shape


def _dimension(buf: bytes, where: str) -> int | str | None:
    value: int | str | None = None
    for field in _fields(buf, where):
        if field.number == 1:
            value = field.int64()
        elif field.number == 2:
            value = field.text() or None
    return value


def _opset_import(buf: bytes) -> tuple[str, int]:
    domain, version = "", 0
    for field in _fields(buf, "opset_import"):
        if field.number == 1:
            domain = field.text()
        elif field.number == 2:
            version = field.int64()
    return domain, version


def _string_pair(buf: bytes, where: str) -> tuple[str, str]:
    key = value = ""
    for field in _fields(buf, where):
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


class _Field(NamedTuple):
    """One decoded field: its number, wire type and payload (int for varints, else bytes)."""

    number: int
    wire: int
    payload: int | bytes
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

    def message(self) -> bytes:
        """A length-delimited payload: a nested message, a bytes or a string field."""
        self._expect(_LENGTH_DELIMITED)
        assert isinstance(self.payload, bytes)
        return self.payload

    def text(self) -> str:
        try:
            return self.message().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelFormatError(f"{self.where}: field {self.number} is not UTF-8") from exc

    def float32(self) -> float:
        self._expect(_FIXED32)
        assert isinstance(self.payload, bytes)
        value: float = struct.unpack("<f", self.payload)[0]
        return value

    # Repeated numeric fields come packed (one length-delimited run) or one value per field.

    def float32s(self) -> array[float]:
        return self._fixed("f", 4, _FIXED32)

    def float64s(self) -> array[float]:
        return self._fixed("d", 8, _FIXED64)

    def int64s(self) -> list[int]:
        return [_signed64(v) for v in self.uint64s()]

    def uint64s(self) -> list[int]:
        if self.wire == _VARINT:
            assert isinstance(self.payload, int)
            return [self.payload & _UINT64]
        buf = self.message()
        values: list[int] = []
        pos = 0
        while pos < len(buf):
            value, pos = _varint(buf, pos, self.where)
            values.append(value & _UINT64)
        return values

    def _fixed(self, code: str, size: int, single_wire: int) -> array[float]:
        if self.wire != single_wire:
            self._expect(_LENGTH_DELIMITED)
        assert isinstance(self.payload, bytes)
        if len(self.payload) % size:
            raise ModelFormatError(
                f"{self.where}: field {self.number} holds {len(self.payload)} bytes, "
                f"not a whole number of {size}-byte values"
            )
        values: array[float] = array(code, self.payload)
        if sys.byteorder == "big":  # protobuf fixed-width values are little-endian
            values.byteswap()
        return values


def _fields(buf: bytes, where: str) -> Iterator[_Field]:
    """Yield the fields of one serialized message in order; raise on truncation or garbage."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos, where)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ModelFormatError(f"{where}: field number 0 at byte {pos} (not an ONNX file?)")
        payload: int | bytes
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


def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
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


def _signed64(value: int) -> int:
    value &= _UINT64
    return value - (1 << 64) if value >= 1 << 63 else value
