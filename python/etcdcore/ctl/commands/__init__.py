"""etcdcorectl's commands, grouped as etcdctl's help groups them."""
