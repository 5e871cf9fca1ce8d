//! The real-server harness: private Dovecot (IMAP 143 + STARTTLS, IMAPS, POP3 + STLS,
//! POP3S, LMTP) and Postfix (submission with STARTTLS and Dovecot SASL, delivery over
//! LMTP) on free loopback ports, with bearer tokens judged by the emulator.
