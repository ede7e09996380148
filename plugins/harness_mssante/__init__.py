"""MSSanté exchanges: a mail simulator, the messages and their IHE XDM archives."""
