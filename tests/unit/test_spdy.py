"""SPDY/3.1 framing and header-block codec."""
import struct
import zlib

import pytest

from tinykube.apiserver import spdy


def test_dictionary_is_the_spdy3_constant():
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"utf-,*,enq=0.")


def test_header_block_roundtrip_and_layout():
    raw = spdy.encode_header_block({"StreamType": "error", "port": ["80", "81"]})
    assert raw[:4] == b"\x00\x00\x00\x02"
    assert raw[4:8] == struct.pack(">I", 10) and raw[8:18] == b"streamtype"
    assert spdy.decode_header_block(raw) == {"streamtype": ["error"], "port": ["80", "81"]}
    assert spdy.decode_header_block(spdy.encode_header_block({})) == {}


def test_truncated_header_block_is_protocol_error():
    raw = spdy.encode_header_block({"a": "bcd"})
    with pytest.raises(spdy.ProtocolError):
        spdy.decode_header_block(raw[:-1])
    with pytest.raises(spdy.ProtocolError):
        spdy.decode_header_block(b"\x00\x00")


def test_compressed_blocks_share_one_zlib_stream_per_direction():
    comp, dec = spdy.HeaderCompressor(), spdy.HeaderDecompressor()
    b1 = comp.compress({"streamtype": "error"})
    b2 = comp.compress({"streamtype": "stdout"})
    # the first block carries a zlib header announcing the preset dictionary (FDICT + dictid)
    assert b1[1] & 0x20 and struct.unpack(">I", b1[2:6])[0] == 0xE3C6A7C2
    assert dec.decompress(b1) == {"streamtype": ["error"]}
    assert dec.decompress(b2) == {"streamtype": ["stdout"]}
    # a plain zlib decompressor with the dictionary reads what we wrote (what Go's zlib does)
    z = zlib.decompressobj(zdict=spdy.DICTIONARY)
    assert spdy.decode_header_block(z.decompress(b1)) == {"streamtype": ["error"]}


def test_frame_header_bits():
    f = spdy.encode_data(5, b"abc", fin=True)
    assert f == b"\x00\x00\x00\x05\x01\x00\x00\x03abc"
    p = spdy.encode_ping(7)
    assert p == b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x07"
    r = spdy.encode_rst_stream(3, spdy.RST_CANCEL)
    assert r[:8] == b"\x80\x03\x00\x03\x00\x00\x00\x08" and r[8:] == b"\x00\x00\x00\x03\x00\x00\x00\x05"


def test_parser_all_frame_types_byte_by_byte():
    # one parser per direction, as on a real connection
    p_client, p_server = spdy.FrameParser(), spdy.FrameParser()
    frames = []
    out = p_client.feed(spdy.encode_settings([(0, 7, 65536)]))
    assert out == [spdy.Settings([(0, 7, 65536)])]
    c2 = spdy.HeaderCompressor()
    cbytes = (spdy.encode_syn_stream(c2, 1, {"streamtype": "error"}, priority=2)
              + spdy.encode_syn_stream(c2, 3, {"streamtype": "data", "port": "80", "requestid": "0"},
                                       flags=spdy.FLAG_FIN)
              + spdy.encode_data(3, b"hello") + spdy.encode_data(3, fin=True)
              + spdy.encode_ping(1) + spdy.encode_window_update(3, 1000)
              + spdy.encode_rst_stream(1, spdy.RST_CANCEL) + spdy.encode_goaway(3, 0))
    for i in range(len(cbytes)):
        frames += p_client.feed(cbytes[i:i + 1])
    assert frames == [
        spdy.SynStream(1, {"streamtype": ["error"]}, 0, 2, 0),
        spdy.SynStream(3, {"streamtype": ["data"], "port": ["80"], "requestid": ["0"]}, 0, 0, spdy.FLAG_FIN),
        spdy.DataFrame(3, b"hello", 0),
        spdy.DataFrame(3, b"", spdy.FLAG_FIN),
        spdy.Ping(1),
        spdy.WindowUpdate(3, 1000),
        spdy.RstStream(1, spdy.RST_CANCEL),
        spdy.GoAway(3, 0),
    ]
    assert frames[1].fin and frames[3].fin and not frames[2].fin
    s2 = spdy.HeaderCompressor()
    sframes = p_server.feed(spdy.encode_syn_reply(s2, 1) + spdy.encode_headers(s2, 1, {"x": "y"}))
    assert sframes == [spdy.SynReply(1, {}), spdy.HeadersFrame(1, {"x": ["y"]})]


def test_parser_rejects_other_versions_and_keeps_unknown_types():
    with pytest.raises(spdy.ProtocolError):
        spdy.FrameParser().feed(b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01")
    assert spdy.FrameParser().feed(b"\x80\x03\x00\x0a\x00\x00\x00\x01z") == [spdy.UnknownControl(10, 0, b"z")]


def test_large_data_frame_roundtrip():
    data = bytes(range(256)) * 200
    assert spdy.FrameParser().feed(spdy.encode_data(9, data)) == [spdy.DataFrame(9, data, 0)]
