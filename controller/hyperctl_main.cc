int main() { return 0; }  // placeholder: the real hyperctl lands with providers/builtin
