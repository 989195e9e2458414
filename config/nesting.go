package config

import "github.com/goccy/go-yaml/token"

// tooDeep returns the first token at which the file nests lists and
// mappings more than MaxNesting deep, or nil. It runs on the lexer's tokens,
// before the parser, whose recursion is what deep nesting exhausts (100,000
// "[" take gigabytes).
//
// Flow collections ("[", "{") count one level each until closed. Block
// collections count by indentation, as YAML defines them (YAML 1.2.2 §8.2):
// a line that starts further right than the enclosing block opens a level,
// and so does each "-" or "?" indicator, since "- - - x" nests on one line.
// The count can exceed the parser's own by one or two (a scalar on its own
// line counts as a level), which the limit leaves room for.
func tooDeep(tks token.Tokens) *token.Token {
	var block []int // columns of the open block levels, increasing
	flow, line := 0, 0
	for _, tk := range tks {
		if tk.Position == nil || tk.Type == token.CommentType {
			continue
		}
		newLine := tk.Position.Line != line
		line = tk.Position.Line
		switch tk.Type {
		case token.SequenceEndType, token.MappingEndType:
			flow = max(flow-1, 0)
			continue
		case token.DocumentHeaderType, token.DocumentEndType:
			block, flow = block[:0], 0
			continue
		}
		if flow == 0 && (newLine || tk.Type == token.SequenceEntryType || tk.Type == token.MappingKeyType) {
			col := tk.Position.Column
			for len(block) > 0 && block[len(block)-1] > col {
				block = block[:len(block)-1]
			}
			if len(block) == 0 || block[len(block)-1] < col {
				block = append(block, col)
			}
		}
		if tk.Type == token.SequenceStartType || tk.Type == token.MappingStartType {
			flow++
		}
		if len(block)+flow > MaxNesting {
			return tk
		}
	}
	return nil
}
