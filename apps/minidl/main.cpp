#include <iostream>
int main() { std::cout << "minidl\n"; return 0; }
