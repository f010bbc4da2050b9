"""Media against a real peer: sipp calls the daemon's SIP driver and plays sipp's own A-law
recording and RFC 4733 digits (the pcaps sip-tester ships); the mediaapp flow records what
arrives and logs every digit.

 - the digits 9, 1, # arrive once each, as RFC 4733, although every end packet is sent three
   times;
 - the recording is as long as the call and holds the pcap's audio: its energy matches the
   energy of the pcap's samples;
 - a prompt played by the media core reaches the caller as paced PCMU: a 2 s tone and 1 s
   of silence, then the daemon hangs up;
 - a second source sending valid RTP to the call's port (a peer "moving" its media address
   mid-call, or someone hijacking it) is ignored and counted, garbage on the RTP and RTCP
   ports is counted as malformed, and neither changes the recording or the digits.
"""
import os
import sys
import time

from cvxtest import main
import socket
import struct

from mediatest import (MediaDaemon, alaw_to_linear, finish, have_sip, pcap_dir, pcap_rtp,
                       rtp_packet, sipp, udp_socket, ulaw_to_linear, wait_for, write_scenario)

PCAPS = pcap_dir()
SCENARIO_MS = 7300 + 400 + 400 + 600  # the pauses of uac_audio_dtmf.xml


def pcap_audio():
    """Energy and 20 ms frames with a sample over 256 of g711a.pcap's audio."""
    samples = []
    for pt, _seq, _ts, _ssrc, pl in pcap_rtp(os.path.join(PCAPS, "g711a.pcap")):
        assert pt == 8
        samples.extend(alaw_to_linear(b) for b in pl)
    energy = sum(s * s for s in samples)
    loud = sum(1 for i in range(0, len(samples), 160)
               if any(abs(s) > 256 for s in samples[i:i + 160]))
    return len(samples), energy, loud


def check_recording(d, rec):
    n, energy, loud = pcap_audio()
    assert len(rec) == 1, rec
    _call, samples, loud_frames, rec_energy, end = rec[0]
    assert end == "hangup", rec
    # The call lasts the scenario's pauses (plus set-up); the recording is that long.
    assert SCENARIO_MS * 8 - 800 <= samples <= (SCENARIO_MS + 2500) * 8, (samples, rec)
    assert samples >= n
    # Every sample of the pcap was recorded once, and the rest is A-law silence (code 0xd5,
    # which decodes to 8): the energy is the pcap's plus 64 per silent sample.  A lost or
    # doubled 30 ms packet moves it by about 1 %; one of the mover's packets by 80 %.
    want = energy + 64 * (samples - n)
    assert abs(rec_energy - want) <= 0.005 * energy, (rec_energy, want, energy)
    assert abs(loud_frames - loud) <= 0.05 * loud + 2, (loud_frames, loud)
    print("recorded %d samples (pcap %d), energy %d (pcap %d), loud frames %d (pcap %d)"
          % (samples, n, rec_energy, energy, loud_frames, loud))


def test_rfc4733_digits_and_recorded_audio():
    scen = write_scenario("uac_audio_dtmf.xml", PCAPS=PCAPS)
    with MediaDaemon() as d:
        d.start()
        rc, out = sipp(scen, d.port, "rec1")
        assert rc == 0, out
        rec = d.recorded()
        assert d.digits() == [("9", "rfc4733"), ("1", "rfc4733"), ("#", "rfc4733")], d.digits()
        check_recording(d, rec)
        assert d.stop() == 0
    os.unlink(scen)


def call_row(d):
    calls = d.ctl("show calls media")["calls"]
    return calls[0] if calls else None


def test_moved_address_and_garbage_are_ignored():
    scen = write_scenario("uac_audio_dtmf.xml", PCAPS=PCAPS)
    with MediaDaemon() as d:
        d.start()
        p = sipp(scen, d.port, "rec2", background=True)
        d.wait_log(r"mediaapp: \S+ answered", timeout=20)
        row = wait_for(lambda: (lambda r: r if r and r["packets_in"] >= 20 else None)(call_row(d)),
                       20, "media from sipp")
        port = int(row["port"])
        remote = row["remote"]
        assert remote.endswith(" latched"), row
        # Valid RTP from elsewhere, with sipp's own SSRC and loud audio: a peer moving its
        # media address without a re-INVITE, or an attacker.  Then garbage (RTP version 0).
        pkts = pcap_rtp(os.path.join(PCAPS, "g711a.pcap"))
        ssrc = pkts[0][3]
        mover = udp_socket()
        for i in range(50):
            mover.sendto(rtp_packet(8, 60000 + i, 9000000 + 160 * i, ssrc, b"\xaa" * 160),
                         ("127.0.0.1", port))
        junk = udp_socket()
        for i in range(100):
            junk.sendto(bytes([i % 64]) + b"\x08garbage-%03d" % i, ("127.0.0.1", port))
        for i in range(20):
            junk.sendto(b"\x00\xc8not rtcp %02d" % i, ("127.0.0.1", port + 1))

        def counted():
            r = call_row(d)
            return r if r and r["foreign"] == 50 and r["malformed"] == 120 else None
        row = wait_for(counted, 10, "50 foreign and 120 malformed packets counted")
        assert row["remote"] == remote, (row, remote)  # still sending to sipp
        # "show calls" carries the codec sipp offered (PCMA) and the same packet figures.
        call = d.ctl("show calls")["calls"][0]
        assert call["codec"] == "PCMA", call
        assert call["packets_in"] >= row["packets_in"] and call["packets_out"] > 0, call
        assert call["lost"] == 0 and call["late_p99_ms"] >= 0, call
        # "show media": one RTP session; the clock serves it and the recording; lateness and
        # the loop watchdog are measured.
        m = d.ctl("show media")
        assert m["rtp_sessions"] == 1, m
        assert m["clock"]["subscribers"] == 2, m
        assert m["rtp_send_lateness"]["count"] >= row["packets_out"], (m, row)
        assert m["watchdog"]["iterations"] > 0, m
        rc, out = finish(p)
        assert rc == 0, out
        mover.close()
        junk.close()
        # Nothing of the mover's (loud) audio and the same digits: as if nothing happened.
        assert d.digits() == [("9", "rfc4733"), ("1", "rfc4733"), ("#", "rfc4733")], d.digits()
        check_recording(d, d.recorded())
        assert d.stop() == 0
    os.unlink(scen)


def test_prompt_reaches_the_caller():
    """mediaapp's 'play' flow: 2 s of a 1 kHz tone, 1 s of silence, then BYE.  The caller's
    SDP points at a socket of this test, which checks every packet."""
    rx = udp_socket()
    port = rx.getsockname()[1]
    scen = write_scenario("uac_listen.xml", PORT=port)
    with MediaDaemon() as d:
        d.start()
        p = sipp(scen, d.port, "play1", background=True)
        pkts = []
        rx.settimeout(0.5)
        while True:
            try:
                data, src = rx.recvfrom(2048)
            except socket.timeout:
                if p.poll() is not None:
                    break  # the call is over and nothing more comes
                continue
            pkts.append(data)
        rc, out = finish(p)
        assert rc == 0, out
        d.wait_log(r"mediaapp: \S+ played 24000 samples \(done\)")
        assert d.stop() == 0
    rx.close()
    os.unlink(scen)
    # Every packet: RTP version 2, PCMU, 20 ms; sequence numbers and timestamps without a gap.
    hdrs = [struct.unpack(">BBHII", x[:12]) for x in pkts]
    assert len(pkts) >= 150, len(pkts)
    for i, (b0, b1, seq, ts, ssrc) in enumerate(hdrs):
        assert b0 == 0x80 and (b1 & 0x7F) == 0 and len(pkts[i]) == 172, hdrs[i]
        assert ssrc == hdrs[0][4]
        if i:
            assert seq == (hdrs[i - 1][2] + 1) & 0xFFFF, (i, hdrs[i - 1], hdrs[i])
            assert ts == (hdrs[i - 1][3] + 160) & 0xFFFFFFFF, (i, hdrs[i - 1], hdrs[i])
    # The audio: the tone's samples (|x| > 1000) come in one run, every one of them: 16000
    # samples of sin(2 pi 1000 t) starting at sin(0) = 0, so 15999 from the first loud one to
    # the last (the session buffers what the flow writes before the call's media starts).
    samples = [ulaw_to_linear(b) for x in pkts for b in x[12:]]
    loud = [i for i, v in enumerate(samples) if abs(v) > 1000]
    first, last = loud[0], loud[-1]
    tone = samples[first:last + 1]
    assert len(tone) == 15999, len(tone)
    assert all(abs(v) <= 8 for v in samples[:first]), "noise before the tone"
    # A 1 kHz sine at 8 kHz: 8 samples a period; its energy is that of an 8000-peak sine.
    rms = (sum(v * v for v in tone) / len(tone)) ** 0.5
    assert abs(rms - 8000 / 2 ** 0.5) < 200, rms
    # Silence after it, until the BYE.
    assert all(abs(v) <= 8 for v in samples[last + 1:]), max(samples[last + 1:])
    assert len(samples) - last >= 7000


if __name__ == "__main__":
    if not have_sip() or PCAPS is None:
        print("SKIP: needs the sip driver (sip.so) and sip-tester's pcaps")
        sys.exit(77)
    main([test_rfc4733_digits_and_recorded_audio, test_moved_address_and_garbage_are_ignored,
          test_prompt_reaches_the_caller])
