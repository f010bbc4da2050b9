"""The subscriber's mailbox options and PIN with real peers (the tests are in
test_voicemail.py, which describes them; this file runs them as their own ctest entry)."""
import sys

from cvxtest import main
from test_voicemail import MAILBOX, PROMPTS, have_all

if __name__ == "__main__":
    if not have_all():
        print("SKIP: needs sip.so, voicemail.so, sipp and %s" % PROMPTS)
        sys.exit(77)
    main(MAILBOX)
