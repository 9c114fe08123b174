#!/usr/bin/env python3
"""Writes the small seed corpora committed under fuzz/corpus/<target>/seed-*.

Run from anywhere: python3 fuzz/seeds.py. Hand-encoded (protobuf, BER, frames) so it needs
nothing but Python; each seed is a valid example of what the target parses."""
import json, os, struct, zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# --- protobuf ---------------------------------------------------------------------------
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wire, payload):
    key = varint(num << 3 | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def s(num, text):
    return field(num, 2, text.encode() if isinstance(text, str) else text)


timestamp = field(1, 0, 1764672000)
status = field(1, 0, 3600) + field(10, 2, s(1, "/") + field(2, 0, 1 << 30) + field(3, 0, 1 << 29)) + s(11, "pupil")
report_status = field(1, 0, 1) + field(2, 2, timestamp) + field(11, 2, status)
inventory = (
    field(1, 2, s(1, "PC-01"))
    + field(6, 2, s(1, "firefox") + s(2, "128.0") + s(5, "dpkg"))
    + field(6, 2, s(1, "libreoffice") + s(2, "7.5"))
)
report_inventory = field(1, 0, 2) + field(2, 2, timestamp) + s(3, "software") + field(10, 2, inventory)
submit = s(1, "0123456789abcdef") + field(2, 2, report_status) + field(2, 2, report_inventory) + field(3, 0, 42)
put("submit", "status-and-inventory", submit)
put("submit", "status", s(1, "a") + field(2, 2, report_status))

# --- journal: [meta length u8][journal.meta][journal.log] ---------------------------------
def record(kind, seq, payload):
    body = bytes([kind]) + struct.pack("<Q", seq) + payload
    return struct.pack("<II", len(body), zlib.crc32(body)) + body


log = record(2, 1, report_status) + record(1, 2, report_inventory) + record(2, 3, report_status)
meta = json.dumps({"acked_seq": 1, "next_seq": 4, "dropped_total": 0, "epoch": 7}).encode()
put("journal", "three-records", bytes([len(meta)]) + meta + log)
put("journal", "no-meta", b"\x00" + log)
put("journal", "torn-tail", bytes([len(meta)]) + meta + log[:-5])

# --- SNMP (BER) --------------------------------------------------------------------------
def tlv(tag, content):
    n = len(content)
    if n < 0x80:
        head = bytes([n])
    elif n < 0x100:
        head = b"\x81" + bytes([n])
    else:
        head = b"\x82" + struct.pack(">H", n)
    return bytes([tag]) + head + content


def ber_int(n):
    return tlv(0x02, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True))


def oid(text):
    arcs = [int(a) for a in text.split(".")]
    out = bytes([arcs[0] * 40 + arcs[1]])
    for a in arcs[2:]:
        chunk = [a & 0x7F]
        a >>= 7
        while a:
            chunk.insert(0, (a & 0x7F) | 0x80)
            a >>= 7
        out += bytes(chunk)
    return tlv(0x06, out)


def response(req_id, varbinds, community=b"public"):
    vbs = b"".join(tlv(0x30, oid(o) + v) for o, v in varbinds)
    pdu = tlv(0xA2, ber_int(req_id) + ber_int(0) + ber_int(0) + tlv(0x30, vbs))
    return tlv(0x30, ber_int(1) + tlv(0x04, community) + pdu)


system = [
    ("1.3.6.1.2.1.1.1.0", tlv(0x04, b"HP ETHERNET MULTI-ENVIRONMENT,ROM none,JETDIRECT,JD153")),
    ("1.3.6.1.2.1.1.2.0", oid("1.3.6.1.4.1.11.2.3.9.1")),
    ("1.3.6.1.2.1.1.5.0", tlv(0x04, b"printer-1")),
    ("1.3.6.1.2.1.1.7.0", ber_int(72)),
]
put("snmp_response", "system", response(1, system))
interfaces = [
    ("1.3.6.1.2.1.2.2.1.2.1", tlv(0x04, b"eth0")),
    ("1.3.6.1.2.1.2.2.1.6.1", tlv(0x04, bytes.fromhex("001122334455"))),
    ("1.3.6.1.2.1.2.2.1.8.1", ber_int(1)),
    ("1.3.6.1.2.1.2.2.1.10.1", tlv(0x41, b"\x12\x34")),
    ("1.3.6.1.2.1.31.1.1.1.15.1", tlv(0x42, b"\x03\xe8")),
    ("1.3.6.1.2.1.43.11.1.1.6.1.1", tlv(0x04, b"Black Cartridge")),
    ("1.3.6.1.2.1.43.11.1.1.8.1.1", ber_int(100)),
    ("1.3.6.1.2.1.43.11.1.1.9.1.1", ber_int(7)),
    ("1.3.6.1.2.1.17.4.3.1.2.0.17.34.51.68.85", ber_int(3)),
    ("1.3.6.1.2.1.25.3.5.1.2.1", tlv(0x04, b"\x40")),
    ("1.3.6.1.2.1.25.3.3.1.2.196608", ber_int(12)),
    ("1.3.6.1.2.1.1.3.0", tlv(0x43, b"\x01\x00")),
    ("1.3.6.1.2.1.1.4.0", tlv(0x80, b"")),
]
put("snmp_response", "tables", response(1, interfaces))
# v3 engine discovery answer: version 3, msgGlobalData with msgID 2.
put("snmp_response", "v3-report", tlv(0x30, ber_int(3) + tlv(0x30, ber_int(2) + ber_int(65507) + tlv(0x04, b"\x00") + ber_int(3)) + tlv(0x04, b"") + tlv(0x30, b"")))

# --- snmp_tables: [root u8][column u8][index len u8][index…][type u8][len u8][value…] -----
def row(root, column, index, kind, value):
    return bytes([root, column, len(index)]) + bytes(index) + bytes([kind, len(value)]) + value


put("snmp_tables", "interfaces", row(0, 2, [1], 1, b"eth0") + row(0, 6, [1], 1, bytes(6)) + row(1, 15, [1], 5, b"\x03\xe8"))
put("snmp_tables", "supplies", row(10, 6, [1, 1], 1, b"Cyan Toner") + row(10, 8, [1, 1], 0, b"\x64") + row(10, 9, [1, 1], 0, b"\x05") + row(10, 5, [1, 1], 0, b"\x03"))
put("snmp_tables", "fdb-lldp", row(14, 2, [0, 17, 34, 51, 68, 85], 0, b"\x02") + row(13, 2, [2], 0, b"\x05") + row(16, 9, [0, 5, 1], 1, b"switch-2"))

# --- packets: ICMP with/without IP header, ARP reply to 198.18.0.1 / 02:00:00:00:00:01 ----
icmp_reply = bytes([0, 0, 0, 0, 0x12, 0x34, 0, 1]) + b"cookie!!"
ip_header = bytes([0x45, 0, 0, 36, 0, 0, 0, 0, 64, 1, 0, 0, 198, 18, 0, 2, 198, 18, 0, 1])
put("packets", "echo-reply-raw", ip_header + icmp_reply)
put("packets", "echo-reply-dgram", icmp_reply)
quoted = ip_header + bytes([8, 0, 0, 0, 0x12, 0x34, 0, 1])
put("packets", "time-exceeded", ip_header + bytes([11, 0, 0, 0, 0, 0, 0, 0]) + quoted)
arp = (bytes.fromhex("020000000001") + bytes.fromhex("001122334455") + b"\x08\x06"
       + bytes([0, 1, 8, 0, 6, 4, 0, 2]) + bytes.fromhex("001122334455") + bytes([198, 18, 0, 2])
       + bytes.fromhex("020000000001") + bytes([198, 18, 0, 1]))
put("packets", "arp-reply", arp)

# --- config ------------------------------------------------------------------------------
put("config", "small", 'data_dir = "/tmp/caretaker-fuzz"\n[grpc]\nlisten = "127.0.0.1:50051"\nidle_timeout = "5m"\n[scan]\nranges = ["10.20.0.0/22"]\n[[snmp.v3]]\nuser = "u"\nauth_protocol = "sha256"\nauth_password = "secret12"\n[rules.disk_full]\npercent = 90\n[school_hours]\ntimezone = "Europe/London"\nweekly = { mon = "08:00-16:30" }\n')
with open(os.path.join(HERE, "..", "deploy", "collector.toml"), "rb") as f:
    put("config", "deploy-example", f.read())

# --- http_api: [method u8][flags u8][path len u8][path][body] -----------------------------
def api(method, path, body=b"", flags=3):
    return bytes([method, flags, len(path)]) + path.encode() + body


put("http_api", "assets", api(0, "assets"))
put("http_api", "changes", api(0, "changes?limit=5&since=2026-01-01T00:00:00Z&asset=x"))
put("http_api", "ack", api(1, "incidents/INC0000001/ack", b'{"by":"tech","text":"on it"}'))
put("http_api", "problem", api(1, "problems/x", b'{"root_cause":"fan","known_error":true}'))
put("http_api", "availability", api(0, "availability?asset=x&window=7d"))
put("http_api", "capacity", api(0, "capacity?asset=x&since=2026-01-01T00:00:00Z"))
put("http_api", "no-token", api(0, "incidents?status=all", flags=0))

# --- report_form: the staff form's urlencoded body ----------------------------------------
put("report_form", "full", "csrf=abc&name=Ann+Smith&email=ann%40school.example&room=B12&device=pc01&text=The+projector+shows+no+picture")
put("report_form", "no-device", "name=Bob&email=bob@school.example&room=&device=&text=help%0Aplease")
put("report_form", "markup", "name=%3Cscript%3E&email=x%40y&device=projector&text=%3Cb%3Eno%3C%2Fb%3E")

# --- csv_import: an uploaded asset CSV (ours and Snipe-IT's columns) ----------------------
put("csv_import", "ours", "asset_tag,name,kind,serial,macs,site,building,room,department,purchase_date,cost,warranty_end,lifecycle\r\n"
    "T-0001,B12 whiteboard,other,SN123,,Main,North,B12,Maths,2023-09-01,\"£1,234.50\",2027-08-31,deployed\r\n"
    "T-0002,Trolley 1,other,,aa:bb:cc:dd:ee:ff,Main,,Library,,01/02/2024,99.99,,in stock\r\n")
put("csv_import", "snipeit", "\ufeffAsset Tag,Asset Name,Serial,Model,Category,Manufacturer,Location,Purchase Date,Purchase Cost,Warranty,Order Number,Supplier,Status,Notes,MAC Address\n"
    "SCH-100,LIB-PC01,5CG1234,EliteDesk 800,Desktop,HP,Library,2022-09-01,\"£1,100.00\",36 months,PO-77,CDW,Deployed,\"multi\nline\",00:11:22:33:44:55\n")
put("csv_import", "errors", "asset_tag,purchase_date,colour\nT1,31/31/2020,red\nT1,,blue\n")
put("csv_import", "cp1252", b"asset_tag,notes\nT1,caf\xe9\n")
